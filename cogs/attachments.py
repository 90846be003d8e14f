"""Result images packed into one Discord message: as files while they fit, the rest as links.

Discord takes at most 10 attachments and 25 MiB in one request, and each file within the upload
limit the interaction (or the server) allows; a message over those is refused whole. So files go
while they fit and every other image goes as a link to the hub's copy (named in the embed).
"""

from __future__ import annotations

import io

import discord

from bot.engine import Result
from bot.jobs import Job

# One message: at most 10 attachments and 25 MiB in all; the files leave room for the JSON part.
FILES_MAX = 10
REQUEST_MAX_BYTES = 25 * 1024 * 1024
FILES_BUDGET = REQUEST_MAX_BYTES - 256 * 1024
_EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def result_files(
    job: Job,
    result: Result,
    limit: int,
    *,
    total: int = FILES_BUDGET,
    max_files: int = FILES_MAX,
) -> tuple[list[discord.File], list[str]]:
    """The images as files while they fit one request: each at most `limit` bytes (the upload limit
    per file, the interaction's `attachment_size_limit`), all together at most `total` bytes and
    `max_files` files (Discord: 25 MiB and 10 attachments per message). The rest go as links to
    the hub's copy."""
    files: list[discord.File] = []
    links: list[str] = []
    used = 0
    for image in result.images:
        if image.data is None:
            continue
        size = len(image.data)
        if size > limit or used + size > total or len(files) >= max_files:
            links.append(image.url)
            continue
        used += size
        name = f"image-{job.id}-{image.index + 1}.{_EXTENSIONS.get(image.content_type, 'png')}"
        files.append(discord.File(io.BytesIO(image.data), filename=name))
    return files, links
