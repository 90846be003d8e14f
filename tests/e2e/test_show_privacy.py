"""/show never re-posts a result from a channel the member can't see (job ids are sequential).

Seeing the job's channel is required of everyone, moderators included; in a private thread the
member must be in the thread. "Moderator" is a server-wide permission: Manage Messages granted
on one channel by an overwrite does not make a member a moderator anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs import Job, JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import text
from tests.fakediscord.interactions import FakeCallback
from tests.fakediscord.models import (
    MANAGE_MESSAGES,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    FakeGuild,
    FakeMember,
)


@dataclass
class PrivateServer:
    guild: FakeGuild
    general: int
    staff: int
    carol: FakeMember  # in Staff: made the job in #staff-only
    dave: FakeMember  # plain member
    erin: FakeMember  # in Staff: can see the channel
    mona: FakeMember  # server-wide moderator (Manage Messages), can't see #staff-only
    job: Job

    def downloads(self, bed: Bed) -> int:
        return len([r for r in bed.hub.requests if r.path.startswith("/files/")])


async def private_server(bed: Bed) -> PrivateServer:
    guild = bed.fake.add_guild("Private Server")
    staff_role = guild.add_role("Staff", 0)
    mod_role = guild.add_role("Mods", MANAGE_MESSAGES)
    general = guild.add_channel("general")
    staff = guild.add_channel("staff-only")
    # @everyone can't see #staff-only; the Staff role and the bot can.
    guild.channel(staff).set_overwrite(guild.id, type=0, deny=VIEW_CHANNEL)
    guild.channel(staff).set_overwrite(staff_role, type=0, allow=VIEW_CHANNEL | SEND_MESSAGES)
    guild.channel(staff).set_overwrite(guild.bot_member.id, type=1, allow=VIEW_CHANNEL | SEND_MESSAGES)
    carol = guild.add_member("carol", roles=[staff_role])
    dave = guild.add_member("dave")
    erin = guild.add_member("erin", roles=[staff_role])
    mona = guild.add_member("mona", roles=[mod_role])
    await bed.fake.join_guild(guild)
    await bed.services.keys.set_key(guild.id, bed.hub.add_key(credits=500), guild.owner.id)
    assert not guild.channel_permissions(dave, staff) & VIEW_CHANNEL

    made = await bed.job_of(
        await bed.fake.slash(guild, staff, carol, "imagine", {"prompt": "the secret roadmap"})
    )
    job = await bed.wait_job(made.id, JobStatus.POSTED)
    return PrivateServer(guild, general, staff, carol, dave, erin, mona, job)


async def show(bed: Bed, s: PrivateServer, member: FakeMember, channel: int | None = None) -> FakeCallback:
    it = await bed.fake.slash(s.guild, channel or s.general, member, "show", {"job_id": s.job.id})
    return await it.callback()


async def assert_refused(bed: Bed, s: PrivateServer, member: FakeMember, channel: int | None = None) -> None:
    downloads = s.downloads(bed)
    cb = await show(bed, s, member, channel)
    assert cb.ephemeral and "can't see" in text(cb), (member.name, text(cb))
    assert "secret roadmap" not in text(cb)
    where = channel or s.general
    assert not [m for m in bed.fake.messages(where) if "secret roadmap" in str(m.embeds)]
    assert s.downloads(bed) == downloads  # nothing fetched for them


async def test_show_refuses_a_job_from_a_channel_the_member_cannot_view(bed: Bed) -> None:
    s = await private_server(bed)
    await assert_refused(bed, s, s.dave)
    # A moderator who can't see the channel can't have it re-posted either.
    await assert_refused(bed, s, s.mona)

    # Who may: anyone who can view the channel (the author among them).
    for member in (s.erin, s.carol):
        cb = await show(bed, s, member)
        assert cb.type == 5 and not cb.ephemeral, member.name
    await bed.fake.wait_for(
        lambda: len([m for m in bed.fake.messages(s.general) if m.attachments]) == 2 or None,
        what="two re-posted results",
    )


async def test_manage_messages_on_ones_own_channel_makes_no_moderator(bed: Bed) -> None:
    """Dave is given Manage Messages on a channel of his own: in that channel the interaction's
    permissions include it, but he is no moderator of the server."""
    s = await private_server(bed)
    own = s.guild.add_channel("daves-corner")
    s.guild.channel(own).set_overwrite(s.dave.id, type=1, allow=MANAGE_MESSAGES)
    assert s.guild.channel_permissions(s.dave, own) & MANAGE_MESSAGES
    await assert_refused(bed, s, s.dave, own)

    # Nor may he delete or cancel other members' generations there.
    result = await bed.job_of(await bed.fake.slash(s.guild, own, s.erin, "imagine", {"prompt": "erin's"}))
    result = await bed.wait_job(result.id, JobStatus.POSTED)
    (message,) = [m for m in bed.fake.messages(own) if m.attachments]
    pressed = await bed.fake.press_button(message, f"imagine:delete:{result.id}", s.dave)
    cb = await pressed.callback()
    assert cb.ephemeral and "Only the member who made this" in text(cb)
    assert not bed.fake.message(message.id).deleted


async def test_a_private_thread_is_shown_only_to_its_members(bed: Bed) -> None:
    s = await private_server(bed)
    thread = s.guild.add_thread(s.general, "carol and erin", private=True, members=[s.carol, s.erin])
    await bed.fake.join_guild(s.guild)  # the bot sees the thread (GUILD_CREATE lists active threads)
    made = await bed.job_of(await bed.fake.slash(s.guild, thread, s.carol, "imagine", {"prompt": "our plan"}))
    s.job = await bed.wait_job(made.id, JobStatus.POSTED)
    assert s.guild.channel_permissions(s.dave, thread) & VIEW_CHANNEL  # he sees the parent channel

    downloads = s.downloads(bed)
    cb = await show(bed, s, s.dave)
    assert cb.ephemeral and "can't see" in text(cb) and "our plan" not in text(cb)
    assert s.downloads(bed) == downloads
    cb = await show(bed, s, s.erin)
    assert cb.type == 5 and not cb.ephemeral
    await bed.fake.wait_for(
        lambda: (
            [m for m in bed.fake.messages(s.general) if m.attachments and "our plan" in str(m.embeds)] or None
        ),
        what="erin's re-post",
    )
