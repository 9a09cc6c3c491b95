#!/usr/bin/env python3
"""Writes a registry:2-layout store with many manifests, to measure garbage collection
(not part of CI). Usage: gen_gc_store.py DIR [MANIFESTS] [REPOSITORIES]

Each manifest has its own config and one unique layer plus two layers from a shared pool;
every repository tags its newest quarter of manifests; one manifest in ten is deleted (its
revision link removed, as DELETE does), so its unique blobs are garbage.

Measured 2026-11-22 on the 2-core CI machine, warm page cache, release build, 10,000
manifests / 100 repositories / 30,200 blobs (9,000 live manifests, 3,000 garbage blobs):
  garbage-collect --dry-run            0.6-0.9 s, peak RSS 11 MB   (registry:2 2.8.2: 7.6 s, 34 MB,
                                                                      same 3,000 digests)
  garbage-collect (removes 3,000)      3.6 s,     peak RSS 11 MB
  garbage-collect --online --dry-run   0.7 s; daemon peak RSS 11 MB
  garbage-collect -d -m                0.8 s,     peak RSS 8 MB   (6,750 untagged manifests)
  fsck (hashes every blob)             8.6 s,     peak RSS 11 MB
Measure with: /usr/bin/time -v target/release/docker-registry --storage-path DIR garbage-collect -d"""
import hashlib, json, os, sys

root = sys.argv[1]
total = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
repos = int(sys.argv[3]) if len(sys.argv) > 3 else 100
v2 = os.path.join(root, "docker/registry/v2")

def put_blob(data):
    h = hashlib.sha256(data).hexdigest()
    d = os.path.join(v2, "blobs/sha256", h[:2], h)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "data"), "wb") as f:
        f.write(data)
    return "sha256:" + h

def link(path, digest):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "link"), "w") as f:
        f.write(digest)

pool = [put_blob(b"shared layer %d " % i * 16) for i in range(200)]
deleted = 0
for n in range(total):
    repo = "bench/repo%03d" % (n % repos)
    rdir = os.path.join(v2, "repositories", repo)
    config = put_blob(json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode())
    unique = put_blob(b"unique layer %d " % n * 16)
    layers = [pool[n % 200], pool[(n * 7) % 200], unique]
    m = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 60},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 256} for d in layers],
    }).encode()
    md = put_blob(m)
    for d in layers + [config]:
        link(os.path.join(rdir, "_layers/sha256", d[7:]), d)
    if n % 10 == 9:
        deleted += 1
        os.makedirs(os.path.join(rdir, "_manifests/revisions/sha256", md[7:]), exist_ok=True)
        continue
    link(os.path.join(rdir, "_manifests/revisions/sha256", md[7:]), md)
    if (n // repos) % 4 == 0:
        tag = "t%d" % (n // repos)
        link(os.path.join(rdir, "_manifests/tags", tag, "current"), md)
        link(os.path.join(rdir, "_manifests/tags", tag, "index/sha256", md[7:]), md)
print("%d manifests (%d deleted) in %d repositories under %s" % (total, deleted, repos, root))
