"""The django-oscar test store: a Django project run by tests/connectors/oscar_store.py."""
