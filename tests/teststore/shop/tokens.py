"""Fixed API tokens and passwords of the seeded users: TEST DATA ONLY, never a real secret.

Kept free of imports so the pytest fixture can read them without loading Django.
Use as `Authorization: Token <key>`.
"""

ADMIN_TOKEN = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"  # superuser `admin`
OPSBOT_TOKEN = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"  # staff `opsbot`, connector permissions
ALICE_TOKEN = "a11ce0a11ce0a11ce0a11ce0a11ce0a11ce0a11c"  # customer `alice`, not staff

PASSWORDS = {"admin": "admin-pass", "opsbot": "opsbot-pass", "alice": "alice-pass"}
