"""An ``async def`` job: many run at once on one node while each waits."""

import asyncio

from reactor import job


@job("fetch")
async def fetch(args):
    await asyncio.sleep(args.get("delay", 0.1))
    args["fetched"] = f"page {args.get('url', '?')}"
