"""A local fake Discord (REST ``/api/v10``, gateway, attachment CDN) for the real discord.py 2.7 client.

Start it, point discord.py at it, build a guild, log a bot in, then drive the bot as Discord would::

    async with FakeDiscord() as fake:
        setup = fake.setup_default()          # guild, owner/admin/moderator/alice/bob, 3 channels
        fake.install()                        # Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY -> the fake
        bot = MyBot(...)
        task = asyncio.create_task(bot.start(fake.token))
        await fake.wait_ready()               # every shard identified, READY + GUILD_CREATEs sent
        await fake.wait_commands_synced()
        it = await fake.slash(setup.guild_id, setup.general, setup.alice, "imagine",
                              {"prompt": "a cat", "image": FakeAttachment("cat.png", png_bytes)})
        cb = await it.callback()              # FakeCallback: .type .data .content .flags .attachments[.data]
        msg = await it.original()             # FakeMessage after edits (waits for the edit after a defer)
        post = await fake.wait_message(setup.images, lambda m: m.attachments)
        assert post.attachments[0].data == expected_bytes
        await bot.close(); await task
        assert not fake.unknown_routes

Pytest: ``from tests.fakediscord.fixtures import fake_discord`` in a conftest (or module) gives a started fake
with ``fake.default`` (a :class:`DefaultSetup`), installed in-process, and asserts in teardown
(``fixtures.assert_clean``) that no unknown route was hit, every route is in Discord's official OpenAPI spec
(``fake.unspecced_routes``), no body was refused as malformed (``fake.invalid_bodies``: by the spec's schema
or by the rules below) and the fake had no internal error.

Where things are (one module per resource; the test API below is the resources' methods, bound on
``FakeDiscord`` by name):
  :mod:`.server`        ``FakeDiscord``: composes the resources, the routing table, the request pipeline
                        (record → ``fail_next`` faults → rate limits → spec check → handler → observers),
                        lifecycle, pointing discord.py at the fake
  :mod:`.state`         ``FakeState``: the shared state (identity, guilds, channels, sessions, interactions,
                        recordings, the rules' settings) and waiting (``wait_for``, ``wait_request``)
  :mod:`.rest`          ``RecordedRequest``/``RecordedFile``/``InvalidBody``, Discord's error answers, routes
  :mod:`.users`         ``/users/@me``, users, the application
  :mod:`.guilds`        ``add_guild``, ``setup_default``, ``join_guild``/``remove_guild``, guild REST
  :mod:`.channels`      channel REST, DMs, the bot's channel permissions, ``delete_channel``, ``deny_send``,
                        ``set_bot_overwrite``
  :mod:`.messages`      channel messages: store, history, create/edit/delete, nonces, replies, reactions,
                        typing, attachments from uploads, upload limits, ``user_message``
  :mod:`.cdn`           signed attachment URLs, their expiry, serving the bytes, ``refresh-urls``
  :mod:`.commands`      application command registration and storage, ``command_syncs``
  :mod:`.interactions`  the interactions sent (``slash``, buttons, modals…) and ``FakeInteraction``
  :mod:`.responses`     the bot's answers: callback, ``@original``, followups (interaction webhooks)
  :mod:`.gateway`       websocket sessions: IDENTIFY/RESUME, heartbeats, dispatch to a guild's shard,
                        ``drop_shard``/``request_reconnect``/``invalidate_session``
  :mod:`.faults`        ``fail_next`` (injected 429/5xx)
  :mod:`.ratelimits`, :mod:`.openapi`, :mod:`.validation`: Discord's rate limits, spec and payload rules;
  :mod:`.models`: users, guilds, members, roles, channels, messages, attachments, permissions;
  :mod:`.fixtures`: the pytest fixture; :mod:`.install`: pointing a child process at the fake.

Composition: every resource is a small class holding the one shared state (``FakeState``, which
``FakeDiscord`` extends, so tests keep reading and setting ``fake.requests``, ``fake.cdn_url_lifetime``…)
and, passed in, the few resources it calls (``Messages(state, gateway, cdn, channels)``). No mixins: a
resource's constructor says what it depends on, each concept has one file, and no resource reaches another
through ``FakeDiscord``. The one exception is ``Interactions``, the test's own side, which holds the
``FakeDiscord`` because the ``FakeInteraction``/``OptionBuilder`` it builds work on the whole fake. The test
API's names are instance attributes: a harness extends the fake through its hooks (``observers``…), not by
overriding them in a subclass.

Discord's official spec (``spec/openapi.json``, vendored with its LICENSE and provenance; :mod:`.openapi`):
every JSON body and multipart ``payload_json`` is validated against its route's request schema (Draft
2020-12, compiled once per route): by jsonschema-rs in the fake's loop (microseconds), and a body it refuses,
or the first of each shape, by jsonschema with a referencing registry in one worker process, whose verdict
counts; the handler awaits it, so a bad body gets Discord's 400 50035 with an ``errors`` tree. Snowflakes
sent as integers are turned into strings where, and only where, the spec wants a snowflake.

Main API (all waits take ``timeout`` seconds and raise ``TimeoutError`` with a traffic summary; no sleeps):

``FakeDiscord(bot_name=, token=, recommended_shards=1, interaction_deadline=3.0, interaction_ttl=900,
heartbeat_ack_delay=0.03, strict_commands=True, echo_message_events=True)``
  ``url``, ``api_base``, ``gateway_url``, ``token``, ``application_id``, ``bot_user`` (:class:`FakeUser`)
  pointing: ``install(fast_identify=False)`` / ``uninstall()``; ``subprocess_env(base=None,
  fast_identify=False) -> dict`` (env with a ``PYTHONPATH`` entry holding a generated ``sitecustomize.py``).
  ``fast_identify`` turns discord.py's 5 s sleep before every non-first IDENTIFY into a no-op.
  builders: ``add_guild(name, premium_tier=0, owner="owner", shard=(id, count), bot_permissions=,
  everyone_permissions=, upload_limit=None) -> FakeGuild``; ``setup_default() -> DefaultSetup``;
  ``register_attachment(att)``; ``await user_message(channel_id, member, content, attachments=[...])``;
  ``await join_guild(guild)`` / ``await remove_guild(id)`` after READY.
  :class:`FakeGuild`: ``add_channel(name, type=0) -> id``, ``add_role(name, permissions) -> id``,
  ``add_member(name, roles=[...], permissions=None, owner=False) -> FakeMember``,
  ``channel/role/member(name)``,
  ``bot_member``, ``upload_limit``, ``channel_permissions(member, channel_id)``.
  waits: ``wait_ready(shard_count=None, timeout=10, since=identify_count_before)``, ``wait_disconnected()``,
  ``wait_commands_synced(timeout, guild_id=None)``, ``wait_message(channel_id, predicate, timeout,
  source="channel", after=None)``, ``wait_request(method, path_contains, predicate)``,
  ``wait_for(predicate, timeout)`` (predicate takes nothing or ``fake.requests``; re-evaluated on every
  change, returns its first truthy value).
  interactions (return a :class:`FakeInteraction` once dispatched on the shard owning the guild):
  ``slash(guild_id, channel_id, member, "group sub" | [..], options={...} | nested dict | raw list,
  attachments=[FakeAttachment...], force=False)``, ``message_command(guild_id, channel_id, member, name,
  target_message)``, ``user_command(...)``, ``press_button(message, custom_id, member)``,
  ``select(message, custom_id, values, member)``,
  ``submit_modal(it_or_custom_id, values={...}, member=None)``;
  ``autocomplete(guild_id, channel_id, member, command, options, focused) -> choices``.
  :class:`FakeInteraction`: ``await callback()``, ``await original(predicate=None)``, ``await followup(i)``,
  ``followups``, ``edits``, ``callback_attempts``, ``dead`` (3 s rule hit), ``expired``.
  state: ``messages(channel_id, source=None)``, ``message(id)``, ``commands(guild_id=None)``,
  ``command(name, guild_id=None)``, ``command_syncs``, ``requests`` (:class:`RecordedRequest`: method, path
  relative to /api/v10, query, json, files), ``unknown_routes``, ``internal_errors``, ``sessions``,
  ``identify_count``, ``connected_shards()``, ``interactions``, ``gateway_payloads``.
  faults: ``fail_next(n, status=429|500|502|503, route_contains=, method=, retry_after=0.05)``;
  ``await delete_channel(id)`` (404 10003); ``await deny_send(id)`` / ``allow_send`` (403 50013);
  uploads above the guild limit (``premium_tier``/``upload_limit``) get 413 40005;
  ``expire_interaction(it_or_token)`` (webhooks 401 50027); a first callback later than
  ``interaction_deadline`` gets 404 10062 and the token dies (followups 404 10015);
  gateway: ``drop_shard(id, code=4000)`` (client RESUMEs), ``request_reconnect(id)`` (op 7),
  ``invalidate_session(id, resumable=False)`` (op 9).

Documented rules the fake enforces beyond the schema (on for every test; tests of the fake change them):
  ``fake.rate_limits`` (:class:`~.ratelimits.RateLimits`): per-route buckets (5 messages per 5 s per
  channel, webhook/interaction-token routes per token, …) with
  ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`` on every answer and 429 + ``retry_after``
  (``X-RateLimit-Scope`` on 429s); the global 50 requests/s that interaction endpoints are exempt from;
  401/403/429 counted (``fake.invalid_requests``, ``invalid_request_count()``) toward the 10,000 per 10
  minutes ban. The bot's own channel permissions on REST calls from roles and overwrites (post: View Channel
  + Send Messages, files: Attach Files, embeds: Embed Links, replies: Read Message History; without it
  history is ``[]``; 403 50001/50013), never on interaction responses or followups; ``await
  fake.set_bot_overwrite(channel, allow=, deny=)``. Uploads: each file within the guild's limit by boost
  tier (the interactions' ``attachment_size_limit``), 25 MiB per request, 10 files. Signed CDN URLs
  (``ex``/``is``/``hm``) valid ``fake.cdn_url_lifetime`` seconds from each payload that carries them, 404
  after; ``fake.expire_cdn_urls()``, ``fake.signed_url(att)``, ``POST /attachments/refresh-urls`` (real, but
  outside the spec: a bot calling it fails the spec rule). ``nonce`` + ``enforce_nonce`` return the existing
  message within ``fake.nonce_window``. A followup after the deferred original was deleted is a new message.
  Tokens live 15 minutes from the interaction's snowflake. Harness hooks (what benchmarks use; they never
  override the fake's own methods): ``fake.observers`` (called with each finished :class:`RecordedRequest`),
  ``RecordedRequest.received_at``, ``fake.rate_limits``, ``FakeAttachment(serve_delay=)``,
  ``FakeCallback.text_inputs``.

Older rules the fake enforces: payload limits (content 2000, 10 embeds, embed sizes, 5 action rows,
duplicate custom ids, modal title 45, 25 choices, command names/descriptions/option order), empty messages
(50006), replies to unknown messages (50035), a second callback (40060), bot-token auth on REST (401),
``default_member_permissions`` (``slash`` raises ``PermissionError`` unless ``force``), required/unknown
options and choices (``ValueError``).
"""

from .commands import CommandSync
from .faults import FaultRule
from .interactions import FakeCallback, FakeInteraction
from .models import (
    ADMINISTRATOR,
    ATTACH_FILES,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    EMBED_LINKS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MODERATE_MEMBERS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    DefaultSetup,
    FakeAttachment,
    FakeChannel,
    FakeEdit,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
)
from .rest import InvalidBody, RecordedFile, RecordedRequest
from .server import FakeDiscord

__all__ = [
    "ADMINISTRATOR",
    "ATTACH_FILES",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "EMBED_LINKS",
    "FLAG_EPHEMERAL",
    "FLAG_LOADING",
    "MANAGE_GUILD",
    "MANAGE_MESSAGES",
    "MODERATE_MEMBERS",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "VIEW_CHANNEL",
    "CommandSync",
    "DefaultSetup",
    "FakeAttachment",
    "FakeCallback",
    "FakeChannel",
    "FakeDiscord",
    "FakeEdit",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "FaultRule",
    "InvalidBody",
    "RecordedFile",
    "RecordedRequest",
]
