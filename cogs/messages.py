"""Every sentence, title and label a member or moderator reads: the one catalog, by stable key.

A key (`refusal.no_key`, `notice.timed_out`, `status.running`, ...) names one message; its text is
a `str.format` template with named fields. A message that depends on a number has a `Plural`
(one / other) and takes `count`: code never picks a plural form or builds a sentence from pieces
of English itself, it asks `text(key, **params)`. The keys are the ids a translation catalog will
use (gettext `pgettext`/`npgettext` contexts), so they do not change when a text does.

Discord markup (mentions `<@id>`, channels `<#id>`, timestamps `<t:…>`, `**bold**`) is shaped by the
code that knows the ids (`cogs/embeds.py`) and passed in as fields. Command, option and choice
declarations registered with Discord are not here: they are localized through discord.py's
command translator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.hub import (
    ExpiredApiKey,
    HubError,
    HubUnavailable,
    InsufficientCredits,
    InvalidApiKey,
    MissingApiKey,
    OutcomeUnknown,
)
from bot.refusals import Refusal, RefusalCode


@dataclass(frozen=True, slots=True)
class Plural:
    """A message whose words depend on `count`: `one` for 1, `other` for any other number."""

    one: str
    other: str


CATALOG: Mapping[str, str | Plural] = {
    # -- refusals: the core's reason codes (`bot.refusals.RefusalCode`) ----------------------------
    "refusal.channel_not_allowed": "Image generation isn't enabled in this channel. Try {channels}.",
    "refusal.prompt_empty": "Your prompt is empty. Describe the image you want.",
    "refusal.prompt_too_long": "Your prompt is {length:,} characters; the limit is {limit:,}.",
    "refusal.prompt_blocked": "This prompt was blocked by this server's filters.",
    "refusal.unknown_model": "There is no model called `{model}`. Available: {available}.",
    "refusal.aspect_unsupported": "`{model}` doesn't support the aspect `{aspect}`. See /models.",
    "refusal.resolution_unsupported": "`{model}` doesn't offer the resolution `{resolution}`. See /models.",
    "refusal.size_unsupported": "`{model}` at {aspect} and {resolution} isn't supported yet.",
    "refusal.quality_invalid": "Quality must be one of {qualities}.",
    "refusal.count_invalid": "You can ask for 1 to {limit} images at a time.",
    "refusal.too_many_references": "`{model}` takes at most {limit} reference images; you gave {given}.",
    "refusal.hub_unreachable": "The image hub can't be reached right now. Please try again in a minute.",
    "refusal.no_key": "This server has no image hub key yet. A moderator can set one with `/config key set`.",
    "refusal.key_unreadable": (
        "This server's stored hub key can't be read (the bot's encryption key changed). "
        "A moderator needs to set it again with `/config key set`."
    ),
    "refusal.personal_key_unreadable": (
        "Your stored hub key can't be read any more (the bot's encryption key changed). "
        "Set it again with `/mykey set`."
    ),
    "refusal.personal_keys_forbidden": (
        "This server doesn't allow personal hub keys, and has no key of its own yet. "
        "A moderator can set one with `/config key set`."
    ),
    "refusal.needs_personal_key": (
        "Here I can only generate with your own image hub key. Set one with `/mykey set` "
        "(it's stored encrypted and only ever shown masked)."
    ),
    "refusal.quota_exceeded": "This needs {cost} credits but you have {remaining} left this period.",
    "refusal.quota_exceeded.resets": (
        "This needs {cost} credits but you have {remaining} left this period. Your budget resets {resets}."
    ),
    "refusal.queue_full_member": Plural(
        "You already have {count} generation waiting in the queue, the most this server allows. "
        "Wait for one to start, then try again.",
        "You already have {count} generations waiting in the queue, the most this server allows. "
        "Wait for one to start, then try again.",
    ),
    "refusal.queue_full_server": "This server's queue is full. Please try again in a few minutes.",
    "refusal.reference_too_large": (
        "`{filename}` is {megabytes:.0f} MB; references can be at most {limit_mb} MB."
    ),
    "refusal.reference_over_limit": "`{filename}` is larger than {limit_mb} MB.",
    "refusal.reference_empty": "`{filename}` is empty.",
    "refusal.reference_not_an_image": "`{filename}` is not a PNG, JPEG or WebP image.",
    "refusal.reference_damaged": "`{filename}` looks truncated or damaged.",
    "refusal.reference_download_failed": "I couldn't download `{filename}` from Discord. Please try again.",
    "refusal.source_image_unavailable": (
        "I couldn't get image {image} of generation #{job} back from the image hub. Nothing was charged."
    ),
    "refusal.reference_message_gone": (
        "The message these reference images came from was deleted, or no longer has them."
    ),
    "refusal.reference_message_unreadable": (
        "I can't read the message these reference images came from (I need View Channel and "
        "Read Message History there)."
    ),
    "refusal.references_busy_member": (
        "Your reference images from an earlier request are still downloading. Try again once it has started."
    ),
    "refusal.references_busy_server": (
        "Reference images for other requests on this server are downloading right now. "
        "Please try again in a minute."
    ),
    "refusal.references_busy": "The bot is busy downloading reference images. Please try again in a minute.",
    "refusal.show_member_busy": "Your last /show is still being posted. Wait for it, then try again.",
    "refusal.show_member_rate": "You've used /show a lot in the last minute. Please try again in a minute.",
    "refusal.show_server_busy": (
        "Other results are being shown on this server right now. Please try again in a moment."
    ),
    "refusal.show_busy": "The bot is busy showing other results. Please try again in a moment.",
    "refusal.pattern_empty": "The pattern is empty.",
    "refusal.pattern_too_long": "A pattern may be at most {limit} characters long.",
    "refusal.pattern_invalid": "That pattern isn't valid here: {reason}.",
    "refusal.pattern_too_complex": (
        "That pattern is too complex: it compiles to {size:,} steps and the limit is {limit:,} "
        "(large repeat counts like `{{1000}}` cost the most). Try a simpler pattern, or block words instead."
    ),
    "refusal.too_many_patterns": "A server may have at most {limit} patterns.",
    "refusal.patterns_too_costly": (
        "This server's patterns together would compile to {total:,} steps; the limit is {limit:,}. "
        "Remove or simplify some patterns first."
    ),
    "refusal.word_empty": "The word is empty.",
    "refusal.word_too_long": "A blocked word may be at most {limit} characters long.",
    "refusal.too_many_words": "A server may have at most {limit} blocked words.",
    # -- the adapter's own refusals (`cogs.errors.Denied`) and check failures ----------------------
    "denied.manage_server": "You need the Manage Server permission for this.",
    "denied.guild_only": "This works only in a server.",
    "denied.job_not_found": "I can't find that generation on this server.",
    "denied.button_unsupported": "This button is no longer supported.",
    "denied.no_images_left": "This result has no images left to use.",
    "denied.delete_not_allowed": "Only the member who made this, or a moderator, can delete it.",
    "denied.message_has_no_images": "That message has no PNG, JPEG or WebP images to use as references.",
    "denied.model_takes_no_references": "The server's default model `{model}` takes no reference images.",
    "denied.count_field": "The number of images must be a whole number from 1 to 4.",
    "denied.credits_no_personal_key": "You have no hub key of your own. Set one with `/mykey set`.",
    "denied.credits_no_key": "This server has no image hub key yet. Set one with `/config key set`.",
    "denied.key_not_recognised": "The hub doesn't recognise that key. Nothing was saved.",
    "denied.key_not_checked": "{reason} Nothing was saved.",
    "denied.pick_a_channel": "Pick a channel to add or remove.",
    "denied.defaults_unknown_model": "There is no model called `{model}`. See /models.",
    "denied.defaults_aspect": "`{model}` doesn't support the aspect `{aspect}`.",
    "denied.filter_not_found.word": "That word isn't in this server's filters.",
    "denied.filter_not_found.regex": "That regex isn't in this server's filters.",
    "denied.show_not_found": "I can't find that generation on this server.",
    "denied.show_private": "That generation was made in a channel you can't see, so I can't show it to you.",
    "denied.show_private_result": "That generation's results are private to the member who made it.",
    "denied.show_no_images": "That generation has no posted result to show (yet).",
    "denied.show_gone": "The image hub no longer has this generation's images.",
    "denied.show_channel": "Results can be posted in {channels}.",
    "denied.cancel_not_allowed": "Only the member who asked for this, or a moderator, can cancel it.",
    "denied.cancel_too_late": (
        "This was already sent to the image hub, so its credits are spent and it can't be cancelled. "
        "The result will be posted here."
    ),
    "denied.cancel_already_cancelled": "This generation was already cancelled.",
    "denied.cancel_finished": "This generation has already finished.",
    "denied.setting_invalid": "`{value}` can't be your {name}: see /models for what the hub offers.",
    "denied.source_not_finished": "Upscale and Vary work once this generation's images are in.",
    "denied.source_image_missing": "This generation has no image {image}.",
    # -- the hub's errors, for members -------------------------------------------------------------
    "hub_error.bad_key": (
        "This server's image hub key isn't valid. A moderator needs to set one with `/config key set`."
    ),
    "hub_error.expired_key": (
        "This server's image hub key has expired. A moderator must set a new one: `/config key set`."
    ),
    "hub_error.insufficient_credits": (
        "The server's hub balance is too low for this. A moderator can top it up on the hub."
    ),
    "hub_error.unavailable": (
        "The image hub can't be reached right now. Nothing was charged; please try again in a minute."
    ),
    "hub_error.outcome_unknown": (
        "The image hub didn't answer in time, so I can't tell whether it took the request."
    ),
    "hub_error.refused": "The image hub refused the request: {message}",
    "error.unexpected": (
        "Something went wrong on my side. Please try again; moderators can check the bot's logs."
    ),
    # -- a job's status message --------------------------------------------------------------------
    "status.queued": "⏳ Waiting in this server's queue",
    "status.starting": "📨 Sending to the image hub",
    "status.submitted": "🕒 Queued at the image hub",
    "status.running": "🎨 Generating",
    "status.fetching": "📥 Fetching your images",
    "status.working": "⏳ Working",
    "status.first.starting": "📨 Starting…",
    "status.first.queued": "⏳ Queued…",
    "status.position": "#{position} in this server's queue",
    "status.credits_reserved": "{cost} credits reserved",
    "field.requested_by": "Requested by",
    "field.position": "Position",
    "field.should_start": "Should start",
    "field.started": "Started",
    "field.expected_finish": "Expected done",
    "field.cost": "Cost",
    "field.settings": "Settings",
    "field.took": "Took",
    "field.note": "Note",
    "field.prompt": "Prompt",
    "field.member": "Member",
    "field.channel": "Channel",
    "field.model": "Model",
    "field.aspect": "Aspect",
    "field.resolution": "Resolution",
    "field.quality": "Quality",
    "field.images": "Images",
    "field.size": "Size",
    "field.references": "References",
    "field.made_from": "Made from",
    "field.created": "Created",
    "field.ask_again": "Ask again",
    "field.recent": "Recent",
    "field.credits": "Credits",
    "field.account": "Account",
    "field.next_expiry": "Next expiry",
    "credits": "{credits} credits",
    "credits.returned": "{credits} credits ({returned} returned)",
    "job.footer": "job #{job}",
    "job.settings": "`{model}` · {aspect} · {tier} · quality {quality} · ×{n}",
    "job.settings.references": Plural(
        "`{model}` · {aspect} · {tier} · quality {quality} · ×{n} · {count} reference",
        "`{model}` · {aspect} · {tier} · quality {quality} · ×{n} · {count} references",
    ),
    "job.seconds": "{seconds:.0f} s",
    # -- a result ----------------------------------------------------------------------------------
    "result.fewer": (
        "The hub delivered {delivered} of {requested} images; the credits for the rest were returned."
    ),
    "result.not_downloaded": Plural(
        "{count} image could not be downloaded from the hub.",
        "{count} images could not be downloaded from the hub.",
    ),
    "result.too_large": "Too large to upload here:",
    "result.too_large.link": "[image {number}]({url})",
    "result.too_large.unlinked": "image {number} (link too long to show)",
    "result.reshown": "Posted again from job #{job}.",
    # -- a job that ended without its images (`bot.engine.NoticeKind`) -----------------------------
    "notice.title": "Generation not completed",
    "notice.hub_failed": "The image hub couldn't generate this image.",
    "notice.hub_unavailable": "The image hub couldn't be reached, so nothing was sent.",
    "notice.outcome_unknown": (
        "The image hub didn't answer when this was sent, so I can't tell whether it was taken. "
        "I won't send it again on my own; moderators have been told."
    ),
    "notice.no_key": "This server has no image hub key. A moderator can set one with /config key set.",
    "notice.bad_key": "This server's image hub key isn't valid. A moderator needs to set a new one.",
    "notice.insufficient_credits": "The server's hub balance is too low for this request.",
    "notice.insufficient_credits.personal": "Your own hub key is out of credits for this request.",
    "notice.bad_key.personal": "Your own hub key isn't valid any more. Set a new one with /mykey set.",
    "notice.no_key.personal": "Your own hub key is gone (cleared with /mykey clear), so nothing was sent.",
    "notice.invalid_request": "The image hub refused the request.",
    "notice.download_failed": "The images were made but could not be downloaded from the hub.",
    "notice.timed_out": "The image hub took too long; I stopped waiting.",
    "notice.references_gone": "The reference images could no longer be downloaded from Discord.",
    "notice.publish_failed": (
        "The images were made but could not be posted here. "
        "A moderator can check the bot's permissions in this channel."
    ),
    "notice.other": "This generation did not complete.",
    "notice.hub_said": "Hub said: {detail}",
    "notice.refunded": "{credits} credits were returned to your budget.",
    "notice.counted": "{credits} credits were counted, since the hub may have charged them.",
    "notice.nothing_charged": "Nothing was charged.",
    # -- cancel ------------------------------------------------------------------------------------
    "cancelled.title": "Generation cancelled",
    "cancelled.by_author": "Cancelled by its author before it was sent to the image hub.",
    "cancelled.by_other": "Cancelled by {user} before it was sent to the image hub.",
    "cancelled.by_author.returned": (
        "Cancelled by its author before it was sent to the image hub. "
        "{credits} credits were returned to {owner}'s budget."
    ),
    "cancelled.by_other.returned": (
        "Cancelled by {user} before it was sent to the image hub. "
        "{credits} credits were returned to {owner}'s budget."
    ),
    # -- buttons and forms -------------------------------------------------------------------------
    "button.reroll": "Reroll",
    "button.reference": "Use as reference",
    "button.delete": "Delete",
    "button.info": "Info",
    "button.cancel": "Cancel",
    "button.upscale": "U{image}",
    "button.vary": "V{image}",
    "form.imagine.title": "Imagine with these images",
    "form.imagine.from_result": "Imagine from this result",
    "form.imagine.prompt": "Prompt",
    "form.imagine.aspect": "Aspect ratio, e.g. 16:9 (empty = default)",
    "form.imagine.resolution": "Resolution: 1K, 2K or 4K (empty = default)",
    "form.imagine.count": "How many images, 1 to 4 (empty = 1)",
    "form.key.title": "Set the image hub key",
    "form.key.label": "API key (gih_live_…)",
    # -- /models -----------------------------------------------------------------------------------
    "models.title": "Image models",
    "models.none": "The hub lists no models right now.",
    "models.entry": (
        "**Credits per image** {costs}\n**Aspect ratios** {ratios}\n**Reference images** up to {limit}"
    ),
    "models.more": "…and {count} more (see /imagine's model list)",
    # -- /history and Info -------------------------------------------------------------------------
    "settings.title": "Your settings on this server",
    "settings.saved": "Saved. Your next /imagine uses these (an option you type still wins):",
    "settings.reset_all": "All your settings are forgotten. Your next /imagine uses these:",
    "settings.current": "Your next /imagine uses these (an option you type still wins):",
    "settings.value": "{value} · {origin}",
    "settings.origin.option": "typed with the command",
    "settings.origin.member": "your setting",
    "settings.origin.server": "server default",
    "settings.origin.model": "model default",
    "settings.skipped": "Your {name} `{value}` isn't available now: the next value down the chain is used.",
    "settings.footer": "Change one with /settings <option>; forget them with /settings reset.",
    "settings.visibility.public": "in the channel",
    "settings.visibility.private": "only to you",
    "field.visibility": "Results",
    "source.upscale": "upscale of #{job} image {image}",
    "source.vary": "variation of #{job} image {image}",
    "history.title": "Recent generations",
    "history.empty": "{user} hasn't generated anything here yet.",
    "history.footer": "/show job_id posts a result again · the Info button shows its full settings",
    "history.result_link": "[result]({url})",
    "history.queued": "⏳ queued",
    "history.starting": "📨 starting",
    "history.submitted": "🕒 at the hub",
    "history.running": "🎨 generating",
    "history.posting": "📥 posting",
    "history.posted": "✅ posted",
    "history.failed": "❌ failed",
    "history.cancelled": "🚫 cancelled",
    "history.unknown": "❔ unknown",
    "cost.charged": "{credits} credits",
    "cost.nothing": "nothing charged",
    "cost.counted": "{credits} credits counted",
    "cost.reserved": "{credits} credits reserved",
    "info.title": "Generation #{job}",
    "info.line_attached": "The `/imagine` line is attached.",
    # -- /quota and /credits -----------------------------------------------------------------------
    "quota.title": "Image budget",
    "quota.unlimited": "{user} has no credit limit here. Used {period}: {spent:,} credits.",
    "quota.left": "{user}: **{remaining:,}** of {limit:,} credits left {period}",
    "quota.used": "`{bar}` {used:,} used",
    "quota.used.reserved": "`{bar}` {used:,} used ({reserved:,} reserved for running jobs)",
    "quota.resets": "Resets {when}",
    "ledger.reserve": "{when} · reserved {credits:,} credits",
    "ledger.settle_refund": "{when} · returned {credits:,} credits",
    "ledger.release": "{when} · returned {credits:,} credits",
    "period.this.day": "today",
    "period.this.week": "this week",
    "period.this.month": "this month",
    "period.day": "day",
    "period.week": "week",
    "period.month": "month",
    "balance.title": "Image hub balance",
    "balance.unknown": "unknown",
    "balance.no_expiry": "none",
    "balance.spent": "Spent by members {period}",
    "balance.spent.value": "{credits:,} credits",
    "balance.key": "key {masked}",
    "balance.fallback_key": "using the operator's fallback key",
    # -- /config -----------------------------------------------------------------------------------
    "config.personal_keys.allow": "Members may generate with their own hub key (`/mykey`) here.",
    "config.personal_keys.deny": (
        "Members' own hub keys aren't used here: every generation uses this server's key and budgets."
    ),
    "mykey.saved": "Your key `{masked}` is saved (encrypted). The hub reports {credits:,} credits on it.",
    "mykey.removed": "Your key is removed.",
    "mykey.none_to_remove": "You had no key stored.",
    "mykey.none": "You have no key stored. Set one with `/mykey set`.",
    "mykey.shown": "Your key `{masked}`, set {when}.",
    "mykey.forbidden_here": "This server doesn't use members' own keys: here the server's key pays.",
    "form.mykey.title": "Your own image hub key",
    "balance.title.personal": "Your image hub balance",
    "balance.key.personal": "Your key {masked}",
    "status.credits_own_key": "{cost} credits from your own key",
    "config.key_saved": "Key `{masked}` saved. The hub reports {credits:,} credits.",
    "config.key_removed": "Key removed.",
    "config.key_none_to_remove": "This server had no key.",
    "config.key_none": "No key is set.",
    "config.key_none.fallback": "No key is set. The operator's fallback key is used.",
    "config.key_set_by": "Key `{masked}`, set by {user} {when}.",
    "config.default_budget": "Default budget: {credits:,} credits per {period}.",
    "config.default_budget.unlimited": "Default budget: unlimited.",
    "config.budget": "Budget for {who}: {credits:,} credits per period.",
    "config.budget.removed": "Budget for {who}: removed.",
    "config.exempt": "{role} is now exempt from budgets.",
    "config.not_exempt": "{role} is no longer exempt from budgets.",
    "config.rules.default": "**Default**: {credits:,} credits per {period}",
    "config.rules.default.unlimited": "**Default**: unlimited credits per {period}",
    "config.rules.exempt": "**Exempt**: {roles}",
    "config.rules.entry": "{who}: {credits:,}",
    "config.channels": "/imagine works in: {channels}.",
    "config.channels.all": "/imagine works in: every channel.",
    "config.defaults": "Defaults: `{model}` · {aspect} · {resolution} · quality {quality}.",
    "config.limits": (
        "At most {per_member} running per member, {per_server} per server. "
        "Past that, requests wait in a queue: at most {queue_per_member} per member, "
        "{queue_per_server} per server."
    ),
    "config.modlog": "Moderator log: {channel}.",
    "config.modlog.off": "Moderator log: off.",
    "config.alerts.off": "Low balance alert: off.",
    "config.alerts.no_modlog": (
        "Low balance alert below {credits:,} credits. "
        "Set a moderator log channel with `/config modlog` to receive it."
    ),
    "config.alerts.modlog": "Low balance alert below {credits:,} credits. It goes to {channel}.",
    "config.filter_added.word": "Prompts matching that word are now blocked.",
    "config.filter_added.regex": "Prompts matching that regex are now blocked.",
    "config.filter_removed.word": "That word is no longer blocked.",
    "config.filter_removed.regex": "That regex is no longer blocked.",
    "config.patterns_dropped": Plural(
        "{count} older pattern over the size limits (no longer applied) was removed: {patterns}",
        "{count} older patterns over the size limits (no longer applied) were removed: {patterns}",
    ),
    "filters.title": "Prompt filters",
    "filters.words": "Blocked words ({count})",
    "filters.patterns": "Blocked patterns ({count})",
    "filters.none": "none",
    "filters.ignored": "{pattern} (ignored: over the size limits)",
    "filters.footer": "Words match whole words, ignoring case; patterns are RE2 regular expressions.",
    # -- usage -------------------------------------------------------------------------------------
    "usage.title": "Image generation usage",
    "usage.period_spent": "**{credits:,}** credits spent this {period}.",
    "usage.days_spent": Plural(
        "**{credits:,}** credits over the last {count} day.",
        "**{credits:,}** credits over the last {count} days.",
    ),
    "usage.top": "**Top members this {period}**",
    "usage.top.entry": "{rank}. {user} — {credits:,}",
    "usage.nobody": "Nobody has generated anything yet this period.",
    "usage.chart_top": "Top members this {period}",
    # -- the moderator log -------------------------------------------------------------------------
    "modlog.blocked": "🚫 Prompt blocked",
    "modlog.low_balance.title": "⚠️ Image hub balance is low",
    "modlog.low_balance": (
        "The server's hub balance is **{credits:,}** credits, below the alert threshold of "
        "{threshold:,}. Top it up on the hub before generations start failing. "
        "This alert is sent once; it re-arms when the balance is back above the threshold."
    ),
    "modlog.patterns_skipped.title": "Prompt filters skipped",
    "modlog.patterns_skipped": Plural(
        "{count} of this server's prompt filter patterns is over the size limits and no longer "
        "applied:\n{patterns}\nSee `/config filter list`; changing the patterns removes them.",
        "{count} of this server's prompt filter patterns are over the size limits and no longer "
        "applied:\n{patterns}\nSee `/config filter list`; changing the patterns removes them.",
    ),
    "modlog.missing_permissions": (
        "I'm missing {permissions} in {channel}: results that take longer than 15 minutes "
        "can't be posted there."
    ),
    "modlog.unpostable": (
        "I couldn't post the result of job #{job} in {channel}: missing {permissions}. "
        "Grant it, then `/show {job}` posts it again."
    ),
    "modlog.degraded": (
        "Posted the result of job #{job} in {channel} in a reduced form: missing {permissions}."
    ),
    # -- permissions the bot needs where it posts --------------------------------------------------
    "permission.view_channel": "View Channel",
    "permission.send_messages": "Send Messages",
    "permission.attach_files": "Attach Files",
    "permission.embed_links": "Embed Links",
    "permission.read_message_history": "Read Message History",
    "permissions.warning": (
        "I'm missing {permissions} in this channel. Your result is shown in the message above "
        "if it is ready within 15 minutes; after that I may not be able to post it here. "
        "The moderators have been told."
    ),
    # -- lists -------------------------------------------------------------------------------------
    "list.more": "…and {count:,} more",
    "list.none": "none",
}


def text(key: str, /, **params: object) -> str:
    """The message `key` with its fields filled in; a `Plural` picks its form by `count`."""
    template = CATALOG[key]
    if isinstance(template, Plural):
        template = template.one if params["count"] == 1 else template.other
    return template.format(**params)


def echo(value: str, limit: int = 40) -> str:
    """A member's option value, shortened for quoting back (options are free text)."""
    value = value.replace("`", "'")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def refusal(refusal: Refusal) -> str:
    """A refusal of the core, in words: its reason code's message with its facts shaped for it."""
    p = dict(refusal.params)
    code = refusal.code
    key = f"refusal.{code.value}"
    if code is RefusalCode.CHANNEL_NOT_ALLOWED:
        p["channels"] = channel_list(p["channels"])
    elif code is RefusalCode.UNKNOWN_MODEL:
        p["model"] = echo(p["model"])
        p["available"] = ", ".join(f"`{m}`" for m in p["available"][:20]) or text("list.none")
    elif code in _ECHOED:
        p.update({name: echo(p[name]) for name in ("aspect", "resolution") if name in p})
    elif code is RefusalCode.QUALITY_INVALID:
        p["qualities"] = ", ".join(p["qualities"])
    elif code is RefusalCode.QUOTA_EXCEEDED:
        resets = p.pop("resets_at")
        if resets is not None:
            key, p["resets"] = f"{key}.resets", f"<t:{int(resets.timestamp())}:R>"
    elif code in (RefusalCode.REFERENCE_TOO_LARGE, RefusalCode.REFERENCE_OVER_LIMIT):
        p["limit_mb"] = p.pop("limit") // (1024 * 1024)
        if "size" in p:
            p["megabytes"] = p.pop("size") / 1024 / 1024
    return text(key, **p)


# Refusals that quote a member's own option values back: shortened, backticks neutralised.
_ECHOED = (RefusalCode.ASPECT_UNSUPPORTED, RefusalCode.RESOLUTION_UNSUPPORTED, RefusalCode.SIZE_UNSUPPORTED)


def channel_list(channel_ids: Iterable[int]) -> str:
    """Channels as mentions, `<#1>, <#2>`."""
    return ", ".join(f"<#{c}>" for c in channel_ids)


def hub_error(exc: BaseException) -> str:
    """A hub failure in words a member understands, with what to do about it (anything else: our fault)."""
    if isinstance(exc, MissingApiKey | InvalidApiKey):
        return text("hub_error.bad_key")
    if isinstance(exc, ExpiredApiKey):
        return text("hub_error.expired_key")
    if isinstance(exc, InsufficientCredits):
        return text("hub_error.insufficient_credits")
    if isinstance(exc, HubUnavailable):
        return text("hub_error.unavailable")
    if isinstance(exc, OutcomeUnknown):
        return text("hub_error.outcome_unknown")
    if isinstance(exc, HubError):
        return text("hub_error.refused", message=exc.message)
    return text("error.unexpected")
