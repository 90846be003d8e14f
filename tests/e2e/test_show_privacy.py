"""/show never re-posts a result from a channel the member can't see (job ids are sequential)."""

from __future__ import annotations

from bot.jobs import JobStatus
from tests.bed import Bed
from tests.e2e.queue_support import text
from tests.fakediscord.models import MANAGE_MESSAGES, SEND_MESSAGES, VIEW_CHANNEL


async def test_show_refuses_a_job_from_a_channel_the_member_cannot_view(bed: Bed) -> None:
    guild = bed.fake.add_guild("Private Server")
    staff_role = guild.add_role("Staff", 0)
    mod_role = guild.add_role("Mods", MANAGE_MESSAGES)
    general = guild.add_channel("general")
    staff = guild.add_channel("staff-only")
    # @everyone can't see #staff-only; the Staff role and the bot can.
    guild.channel(staff).set_overwrite(guild.id, type=0, deny=VIEW_CHANNEL)
    guild.channel(staff).set_overwrite(staff_role, type=0, allow=VIEW_CHANNEL | SEND_MESSAGES)
    guild.channel(staff).set_overwrite(guild.bot_member.id, type=1, allow=VIEW_CHANNEL | SEND_MESSAGES)
    carol = guild.add_member("carol", roles=[staff_role])  # made the job
    dave = guild.add_member("dave")  # plain member
    erin = guild.add_member("erin", roles=[staff_role])  # can see the channel
    mona = guild.add_member("mona", roles=[mod_role])  # moderator, can't see the channel
    await bed.fake.join_guild(guild)
    await bed.services.keys.set_key(guild.id, bed.hub.add_key(credits=500), guild.owner.id)
    assert not guild.channel_permissions(dave, staff) & VIEW_CHANNEL

    made = await bed.job_of(
        await bed.fake.slash(guild, staff, carol, "imagine", {"prompt": "the secret roadmap"})
    )
    job = await bed.wait_job(made.id, JobStatus.POSTED)
    downloads = len([r for r in bed.hub.requests if r.path.startswith("/files/")])

    it = await bed.fake.slash(guild, general, dave, "show", {"job_id": job.id})
    cb = await it.callback()
    assert cb.ephemeral and "can't see" in text(cb)
    assert "secret roadmap" not in text(cb)
    assert not [m for m in bed.fake.messages(general) if "secret roadmap" in str(m.embeds)]
    assert len([r for r in bed.hub.requests if r.path.startswith("/files/")]) == downloads

    # Who may: anyone who can view the channel, the author, a moderator.
    for member in (erin, carol, mona):
        cb = await (await bed.fake.slash(guild, general, member, "show", {"job_id": job.id})).callback()
        assert cb.type == 5 and not cb.ephemeral, member.name
    await bed.fake.wait_for(
        lambda: len([m for m in bed.fake.messages(general) if m.attachments]) == 3 or None,
        what="three re-posted results",
    )
