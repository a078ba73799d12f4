"""After the suite: every secret the tests used (API keys, root keys, KMS keys, provider
credentials) must appear in no service log line. Run by `make test`."""

import pathlib
import sys

DIR = pathlib.Path(__file__).resolve().parent.parent / "target" / "test-hygiene"


def main() -> int:
    secrets_file, logs_file = DIR / "secrets.txt", DIR / "service-logs.jsonl"
    if not secrets_file.exists() or not logs_file.exists():
        print(f"secret hygiene: nothing recorded under {DIR}")
        return 1
    secrets = {s for s in secrets_file.read_text().splitlines() if len(s) >= 8}
    logs = logs_file.read_text(errors="replace")
    hits = sorted(s for s in secrets if s in logs)
    print(f"secret hygiene: {len(secrets)} secrets, {logs.count(chr(10))} log lines, {len(hits)} hits")
    for s in hits:
        print(f"  found in logs: {s[:6]}... ({len(s)} chars)")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
