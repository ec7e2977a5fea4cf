"""The P2 baseline: the least a client can do per document — POST, parse JSON, base64-decode, write the file.

With "durable" as the fifth argument it writes the way audiosum must (temp file, fdatasync, rename).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import httpx

from pipeline.providers.openai.prompts import system_prompt


def write(path: Path, data: bytes, durable: bool) -> None:
    if not durable:
        path.write_bytes(data)
        return
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fdatasync(handle.fileno())
    os.replace(temp, path)


async def main(manifest: Path, out: Path, base_url: str, concurrency: int, durable: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = iter(manifest.open())
    async with httpx.AsyncClient(base_url=base_url + "/", timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            for line in lines:
                item = json.loads(line)
                body = {"model": "gpt-4o-audio-preview", "modalities": ["text", "audio"],
                        "audio": {"voice": "alloy", "format": "wav"},
                        "messages": [{"role": "system", "content": system_prompt(30)},
                                     {"role": "user", "content": item["text"]}]}
                answer = (await client.post("chat/completions", json=body)).json()
                audio = answer["choices"][0]["message"]["audio"]
                write(out / f"{item['id']}.wav", base64.b64decode(audio["data"]), durable)
                write(out / f"{item['id']}.txt", audio["transcript"].encode(), durable)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]),
                     len(sys.argv) > 5 and sys.argv[5] == "durable"))
