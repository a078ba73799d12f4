"""Parses every .tf file under infra/terraform and checks the resources and variables a
deployment needs are declared. Run by `make test` (python-hcl2 from the project's .venv)."""

import pathlib
import sys

import hcl2

ROOT = pathlib.Path(__file__).resolve().parent.parent / "infra" / "terraform"

REQUIRED_RESOURCES = {
    "google_bigquery_dataset",
    "google_kms_key_ring",
    "google_kms_crypto_key",
    "google_service_account",
    "google_project_iam_member",
    "google_bigquery_dataset_iam_member",
    "google_kms_crypto_key_iam_member",
    "google_secret_manager_secret",
    "google_secret_manager_secret_iam_member",
    "google_cloud_run_v2_service",
}
REQUIRED_VARIABLES = {"project_id", "region", "image", "bigquery_location", "meta_dataset",
                      "min_instances", "max_instances", "concurrency", "kms_rotation_period"}
REQUIRED_OUTPUTS = {"service_url", "kms_key_name", "service_account_email"}


def main() -> int:
    files = sorted(ROOT.glob("*.tf"))
    if not files:
        print(f"no .tf files under {ROOT}")
        return 1
    resources, variables, outputs = {}, set(), set()
    for f in files:
        try:
            doc = hcl2.loads(f.read_text())
        except Exception as e:  # the parser's own error names the line
            print(f"{f.name}: does not parse: {e}")
            return 1
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    resources.setdefault(rtype.strip('"'), {})[name.strip('"')] = body
        for block in doc.get("variable", []):
            variables.update(k.strip('"') for k in block)
        for block in doc.get("output", []):
            outputs.update(k.strip('"') for k in block)
    problems = []
    problems += [f"missing resource {r}" for r in sorted(REQUIRED_RESOURCES - resources.keys())]
    problems += [f"missing variable {v}" for v in sorted(REQUIRED_VARIABLES - variables)]
    problems += [f"missing output {o}" for o in sorted(REQUIRED_OUTPUTS - outputs)]
    kms = resources.get("google_kms_crypto_key", {})
    if not any("rotation_period" in body for body in kms.values()):
        problems.append("the KMS key has no rotation_period")
    run = str(resources.get("google_cloud_run_v2_service", {}))
    for needle in ("/health/ready", "/health/live", "cpu_idle", "secret_key_ref", "KMS_KEY_NAME"):
        if needle not in run:
            problems.append(f"the Cloud Run service lacks {needle}")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"terraform: {len(files)} files parse; {sum(len(v) for v in resources.values())} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
