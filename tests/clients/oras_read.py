"""An independent client reads what hpn wrote: the Python `oras` package (oras-py) against a
registry, listing tags, the referrers API (or, where it is absent, the referrers tag schema's
fallback index) and pulling manifests and blobs, each checked against its digest.

Usage: python3 oras_read.py HOST EXPECTED.json
EXPECTED is a list of {"repository", "kind" ("signature"|"referrer"), "subject", "digest"}.
Prints one line per checked attachment, exits non-zero on the first mismatch.
"""

import hashlib
import json
import sys

import oras.client

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fail(message):
    print(f"oras_read: {message}", file=sys.stderr)
    sys.exit(1)


def fetch_manifest(client, host, repository, reference, digest=None):
    """The manifest's raw bytes, checked against `digest` (or the reference, when it is one)."""
    url = f"{client.prefix}://{host}/v2/{repository}/manifests/{reference}"
    response = client.do_request(url, "GET", headers={"Accept": MANIFEST_TYPES})
    if response.status_code != 200:
        fail(f"GET {url}: {response.status_code}")
    expected = digest or (reference if reference.startswith("sha256:") else None)
    if expected and sha256(response.content) != expected:
        fail(f"{url} hashes to {sha256(response.content)}, not {expected}")
    return response.content


def fetch_blob(client, host, repository, descriptor):
    response = client.get_blob(f"{host}/{repository}", descriptor["digest"])
    if response.status_code != 200 or sha256(response.content) != descriptor["digest"]:
        fail(f"blob {descriptor['digest']} of {repository}: {response.status_code}")
    return response.content


def referrers(client, host, repository, subject):
    """What the referrers API lists for `subject`, else the fallback index `sha256-<hex>`."""
    url = f"{client.prefix}://{host}/v2/{repository}/referrers/{subject}"
    response = client.do_request(url, "GET", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    if response.status_code == 200:
        return "api", response.json()["manifests"]
    if response.status_code != 404:
        fail(f"GET {url}: {response.status_code}")
    tag = "sha256-" + subject.split(":", 1)[1]
    return "fallback", json.loads(fetch_manifest(client, host, repository, tag))["manifests"]


def main():
    host, expected_file = sys.argv[1], sys.argv[2]
    with open(expected_file) as file:
        expected = json.load(file)
    client = oras.client.OrasClient(hostname=host, insecure=True)
    for attachment in expected:
        repository, subject = attachment["repository"], attachment["subject"]
        fetch_manifest(client, host, repository, subject)
        tags = client.get_tags(f"{host}/{repository}")
        if attachment["kind"] == "signature":
            tag = "sha256-" + subject.split(":", 1)[1] + ".sig"
            if tag not in tags:
                fail(f"{repository} has no tag {tag}: {tags}")
            manifest = json.loads(fetch_manifest(client, host, repository, tag, attachment["digest"]))
            payload = json.loads(fetch_blob(client, host, repository, manifest["layers"][0]))
            named = payload["critical"]["image"]["docker-manifest-digest"]
            if named != subject:
                fail(f"the signature in {repository} names {named}, not {subject}")
            print(f"signature {attachment['digest']} of {subject} in {repository}: tag, payload ok")
        else:
            how, listed = referrers(client, host, repository, subject)
            if attachment["digest"] not in [entry["digest"] for entry in listed]:
                fail(f"{attachment['digest']} is not among the referrers of {subject} ({how}): {listed}")
            manifest = json.loads(fetch_manifest(client, host, repository, attachment["digest"]))
            if manifest.get("subject", {}).get("digest") != subject:
                fail(f"{attachment['digest']} has subject {manifest.get('subject')}, not {subject}")
            for layer in manifest.get("layers", []):
                fetch_blob(client, host, repository, layer)
            print(f"referrer {attachment['digest']} of {subject} in {repository}: listed ({how}), blobs ok")


if __name__ == "__main__":
    main()
