"""A child process for the jsonfs tests: appends messages to one user's history and
prints each acknowledged message id (flushed) as soon as the call returns."""

from __future__ import annotations

import sys

from memvault import MemVault, Settings


def main() -> None:
    url, user, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = Settings(database_url=url, max_messages=100_000, job_worker=False)
    with MemVault(settings) as vault:
        i = 0
        while count <= 0 or i < count:
            m = vault.add_message(user, "user", f"{tag} message {i}")
            if i % 3 == 0:
                vault.add(user, f"{tag} memory {i}", tags=[tag])
            sys.stdout.write(m.message_id + "\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    main()
