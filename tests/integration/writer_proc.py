"""A child process for the crash and concurrency tests: writes memories and prints each
acknowledged id on its own line (flushed) as soon as the call returns."""

from __future__ import annotations

import sys

from memvault import MemVault, Settings


def main() -> None:
    url, user, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with MemVault(Settings(database_url=url, sqlite_busy_timeout_s=60)) as vault:
        i = 0
        while count <= 0 or i < count:
            if batch > 1:
                made = vault.add_many(
                    user, [{"content": f"{user} note {i + j}"} for j in range(batch)]
                )
                ids = [m.memory_id for m in made]
                i += batch
            else:
                ids = [vault.add(user, f"{user} note {i}", key=f"k{i}").memory_id]
                vault.add_message(user, "user", f"message {i}")
                i += 1
            sys.stdout.write("".join(f"{x}\n" for x in ids))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
