"""The inbox's own words in zh-CN and en, chosen by the reader's roster locale.

Pure: standard library only. Texts of SOPs (titles, instructions) come localized from the
engine; this catalogue holds only the inbox's frame around them. Placeholders use
str.format names; every message exists in both locales (a test checks it).
"""

from __future__ import annotations

from typing import Any

LOCALES = ("zh-CN", "en")

MESSAGES: dict[str, dict[str, str]] = {
    # frame
    "app": {"en": "storeops inbox", "zh-CN": "storeops 工作台"},
    "nav.today": {"en": "Today", "zh-CN": "今日任务"},
    "nav.start": {"en": "Start an SOP", "zh-CN": "发起流程"},
    "nav.analytics": {"en": "Analytics", "zh-CN": "数据分析"},
    "nav.sign_out": {"en": "Sign out", "zh-CN": "退出登录"},
    "nav.signed_in_as": {"en": "Signed in as {name}", "zh-CN": "当前用户：{name}"},
    "yes": {"en": "yes", "zh-CN": "是"},
    "no": {"en": "no", "zh-CN": "否"},
    "none": {"en": "none", "zh-CN": "无"},
    "back_today": {"en": "Back to today's tasks", "zh-CN": "返回今日任务"},
    # sign-in
    "signin.title": {"en": "Sign in", "zh-CN": "登录"},
    "signin.person": {"en": "Your name (roster id)", "zh-CN": "用户名（名册 ID）"},
    "signin.password": {"en": "Password", "zh-CN": "密码"},
    "signin.with_password": {"en": "Sign in with a password", "zh-CN": "使用密码登录"},
    "signin.with_token": {"en": "Or sign in with a token", "zh-CN": "或使用令牌登录"},
    "signin.token": {"en": "Token", "zh-CN": "令牌"},
    "signin.submit": {"en": "Sign in", "zh-CN": "登录"},
    "signin.wrong": {
        "en": "That name and password (or token) do not match. Ask your lead for a new "
        "password or token (storeops passwd / storeops token).",
        "zh-CN": "用户名与密码（或令牌）不匹配。请联系负责人重设密码或令牌"
        "（storeops passwd / storeops token）。",
    },
    "signin.throttled": {
        "en": "Too many failed sign-ins for {person}. Try again in {minutes} minute(s).",
        "zh-CN": "{person} 登录失败次数过多，请在 {minutes} 分钟后重试。",
    },
    "signin.signed_out": {"en": "You are signed out.", "zh-CN": "已退出登录。"},
    "signin.needed": {"en": "Please sign in first.", "zh-CN": "请先登录。"},
    # refusals of forms and pages
    "csrf": {
        "en": "This form has expired or did not come from this inbox. Reload the page and "
        "try again.",
        "zh-CN": "表单已过期或并非来自本工作台，请刷新页面后重试。",
    },
    "not_found": {"en": "Not found: {what}", "zh-CN": "未找到：{what}"},
    "error.refused": {"en": "Refused", "zh-CN": "操作被拒绝"},
    "error.refused_recorded": {
        "en": "The refusal is recorded in the run's audit ledger.",
        "zh-CN": "此次拒绝已记入流程的审计账本。",
    },
    "error.invalid": {"en": "Please correct the form", "zh-CN": "请修改表单"},
    "error.already": {"en": "Already done", "zh-CN": "已经完成"},
    "error.not_active": {"en": "This step is not open", "zh-CN": "该步骤未处于待办状态"},
    "error.upload": {
        "en": "The file {file} could not be stored: {why}",
        "zh-CN": "文件 {file} 无法保存：{why}",
    },
    "error.request_too_large": {
        "en": "The upload is too large: at most {limit} MiB per submission",
        "zh-CN": "上传内容过大：每次提交最多 {limit} MiB",
    },
    "error.too_large": {
        "en": "it is larger than {limit} MiB",
        "zh-CN": "超过 {limit} MiB",
    },
    "error.kind": {
        "en": "{evidence} accepts {kinds}, not {found}",
        "zh-CN": "{evidence} 只接受 {kinds}，而不是 {found}",
    },
    # today
    "today.title": {"en": "Today's tasks", "zh-CN": "今日任务"},
    "kind.task": {"en": "task", "zh-CN": "任务"},
    "kind.approval": {"en": "approval", "zh-CN": "审批"},
    "today.none": {
        "en": "Nothing waits for you. New tasks appear here as runs reach your roles.",
        "zh-CN": "暂无待办。流程进行到您的角色时，新任务会显示在这里。",
    },
    "today.overdue": {"en": "overdue", "zh-CN": "已逾期"},
    "today.due": {"en": "due", "zh-CN": "截止"},
    "today.no_due": {"en": "no due time", "zh-CN": "无截止时间"},
    "today.run": {"en": "run", "zh-CN": "流程实例"},
    "today.roles_title": {"en": "Open steps by role (all runs)", "zh-CN": "各角色待办（全部流程）"},
    "today.role": {"en": "Role", "zh-CN": "角色"},
    "today.open": {"en": "Open", "zh-CN": "待办"},
    "today.done": {
        "en": "Recorded: {step} in run {run}.",
        "zh-CN": "已记录：流程 {run} 的步骤 {step}。",
    },
    "today.rejected": {
        "en": "Rejected: {step} in run {run}.",
        "zh-CN": "已驳回：流程 {run} 的步骤 {step}。",
    },
    "today.started": {"en": "Started run {run}.", "zh-CN": "已发起流程 {run}。"},
    # task
    "task.instructions": {"en": "Instructions", "zh-CN": "操作说明"},
    "task.checklist": {"en": "Checklist", "zh-CN": "检查清单"},
    "task.check_done": {"en": "done", "zh-CN": "已完成"},
    "task.check_na": {"en": "n/a", "zh-CN": "不适用"},
    "task.check_reason": {"en": "why not applicable", "zh-CN": "不适用的原因"},
    "task.optional": {"en": "optional", "zh-CN": "可选"},
    "task.required": {"en": "required", "zh-CN": "必填"},
    "task.form": {"en": "Form", "zh-CN": "表单"},
    "task.list_hint": {"en": "one per line", "zh-CN": "每行一项"},
    "task.duration_hint": {"en": "e.g. 2h 30m", "zh-CN": "例如 2h 30m"},
    "task.evidence": {"en": "Evidence", "zh-CN": "凭证附件"},
    "task.evidence_kept": {
        "en": "Already uploaded (kept):",
        "zh-CN": "已上传（保留）：",
    },
    "task.at_least": {"en": "at least {count} file(s)", "zh-CN": "至少 {count} 个文件"},
    "task.note": {"en": "Note (optional)", "zh-CN": "备注（可选）"},
    "task.complete": {"en": "Complete", "zh-CN": "提交完成"},
    "task.approve": {"en": "Approve", "zh-CN": "批准"},
    "task.reject": {"en": "Reject", "zh-CN": "驳回"},
    "task.claim": {"en": "Take this step", "zh-CN": "认领此步骤"},
    "task.claimed_by": {"en": "Claimed by {person}", "zh-CN": "已由 {person} 认领"},
    "task.reassign": {"en": "Reassign to", "zh-CN": "改派给"},
    "task.reassign_go": {"en": "Reassign", "zh-CN": "改派"},
    "task.reject_reason": {"en": "Reason for rejecting", "zh-CN": "驳回原因"},
    "task.approvals": {
        "en": "Approvals: {given} of {needed} given",
        "zh-CN": "审批：已有 {given} / 需要 {needed}",
    },
    "task.assigned": {"en": "Assigned {at}", "zh-CN": "分派于 {at}"},
    "task.for_roles": {"en": "For: {roles}", "zh-CN": "负责角色：{roles}"},
    "task.not_yours": {
        "en": "This step is for {roles}; you hold {mine}. You cannot act on it.",
        "zh-CN": "该步骤属于 {roles}，您的角色是 {mine}，无法处理。",
    },
    "task.closed_by": {
        "en": "This step was already {outcome} by {actor} at {at}.",
        "zh-CN": "该步骤已由 {actor} 于 {at} {outcome}。",
    },
    "task.closed": {
        "en": "This step is not waiting for anyone now.",
        "zh-CN": "该步骤当前不需要任何人处理。",
    },
    "outcome.done": {"en": "completed", "zh-CN": "完成"},
    "outcome.rejected": {"en": "rejected", "zh-CN": "驳回"},
    "outcome.approved": {"en": "approved", "zh-CN": "批准"},
    # run
    "run.title": {"en": "Run {run}", "zh-CN": "流程实例 {run}"},
    "run.forbidden": {
        "en": "Run {run} belongs to other roles; ask a lead if you need it",
        "zh-CN": "流程实例 {run} 属于其他岗位；如需查看请联系负责人",
    },
    "run.status": {"en": "Status", "zh-CN": "状态"},
    "run.params": {"en": "Parameters", "zh-CN": "参数"},
    "run.open": {"en": "Waiting for", "zh-CN": "等待处理"},
    "run.timeline": {"en": "Timeline", "zh-CN": "时间线"},
    "run.diagram": {"en": "Diagram", "zh-CN": "流程图"},
    "run.legend": {
        "en": "current state highlighted; visited states shaded",
        "zh-CN": "高亮为当前状态，灰底为已经过的状态",
    },
    "run.mermaid": {"en": "Mermaid source", "zh-CN": "Mermaid 源码"},
    "run.chain_ok": {
        "en": "Ledger chain intact: {events} event(s) verified.",
        "zh-CN": "账本哈希链完整：已校验 {events} 条事件。",
    },
    "run.chain_bad": {
        "en": "Ledger chain BROKEN: {problems}",
        "zh-CN": "账本哈希链已被破坏：{problems}",
    },
    "run.evidence": {"en": "Evidence files", "zh-CN": "凭证文件"},
    "run.waiting_runner": {
        "en": "The run continues in the background.",
        "zh-CN": "流程将在后台继续执行。",
    },
    # start
    "start.title": {"en": "Start an SOP", "zh-CN": "发起流程"},
    "start.none": {"en": "No SOPs in the library.", "zh-CN": "流程库为空。"},
    "start.submit": {"en": "Start", "zh-CN": "发起"},
    "start.key": {"en": "Business key (optional)", "zh-CN": "业务键（可选）"},
    "start.broken": {
        "en": "This SOP has definition problems and cannot start:",
        "zh-CN": "该流程定义有问题，无法发起：",
    },
    "start.not_allowed": {
        "en": "Only people holding one of this SOP's roles ({roles}) or a lead may start it.",
        "zh-CN": "只有持有该流程角色（{roles}）的成员或负责人可以发起。",
    },
    "start.params": {"en": "Parameters", "zh-CN": "参数"},
    "start.no_params": {"en": "This SOP takes no parameters.", "zh-CN": "该流程无需参数。"},
}


def translate(locale: str, key: str, **values: Any) -> str:
    """The message `key` in `locale` (English when the locale lacks it), filled in."""
    forms = MESSAGES.get(key)
    if forms is None:
        return key
    text = forms.get(locale) or forms["en"]
    return text.format(**values) if values else text


def pick_locale(accept_language: str | None, default: str = "en") -> str:
    """A locale for someone not signed in, from their browser's Accept-Language."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default if default in LOCALES else "en"
