#!/usr/bin/env python3
"""Check that `flint` and `huggingface_hub` share the hub cache: each reuses what the other downloaded.

    Tools/.venv-hf/bin/python Tools/check_hub_interop.py [--flint .build/debug/flint] [--model Tests/Fixtures/models/flan-tiny]

Serves the model folder with Tools/hub_serve.py on a free 127.0.0.1 port, then:
  A. huggingface_hub.snapshot_download fetches the files into HF_HOME=a; `flint convert hf:...` must find all of
     them cached (no download);
  B. `flint convert hf:...` downloads into HF_HOME=b; the two cache trees (blob names, snapshot symlinks, refs)
     must be identical; hf_hub_download must then send HEADs only (no file GET); with HF_HUB_OFFLINE=1,
     snapshot_download must return flint's snapshot folder.
Exits non-zero on the first disagreement.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def tree(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            out.append((rel, os.readlink(path) if os.path.islink(path) else None))
    return sorted(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flint", default=os.path.join(HERE, "..", ".build", "debug", "flint"))
    parser.add_argument("--model", default=os.path.join(HERE, "..", "Tests", "Fixtures", "models", "flan-tiny"))
    parser.add_argument("--repo", default="google/flan-tiny")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="flint-hub-interop-")
    log = open(os.path.join(work, "requests.log"), "w+")
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "hub_serve.py"), "%s=%s" % (args.repo, args.model),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        endpoint = None
        deadline = time.time() + 20
        while endpoint is None and time.time() < deadline:
            line = server.stdout.readline()
            if line.startswith("HF_ENDPOINT="):
                endpoint = line.strip().split("=", 1)[1]
        if endpoint is None:
            sys.exit("hub_serve.py did not start")
        folder = "models--" + args.repo.replace("/", "--")
        files = ["config.json", "generation_config.json", "spiece.model", "model.safetensors"]
        files = [f for f in files if os.path.exists(os.path.join(args.model, f))]

        def env(home, **extra):
            e = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
            e.update(HF_HOME=os.path.join(work, home), HF_ENDPOINT=endpoint, **extra)
            return e

        def flint_convert(home):
            r = subprocess.run([args.flint, "convert", "hf:" + args.repo, "-o", os.path.join(work, home + ".flint"),
                                "--json"], env=env(home), capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                sys.exit("flint convert failed: " + r.stderr)
            return json.loads(r.stdout)["hub"]

        def python(home, code, **extra):
            r = subprocess.run([sys.executable, "-c", code], env=env(home, **extra), capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0:
                sys.exit("huggingface_hub failed: " + r.stderr)
            return r.stdout.strip()

        # A: huggingface_hub first, flint reuses.
        python("a", "from huggingface_hub import snapshot_download; snapshot_download(%r, allow_patterns=%r)" % (args.repo, files))
        hub = flint_convert("a")
        origins = {f["name"]: f["origin"] for f in hub["files"]}
        assert all(o == "cached" for o in origins.values()), "A: flint downloaded again: %s" % origins
        print("A ok: flint found all %d files huggingface_hub downloaded (commit %s)" % (len(origins), hub["commit"]))

        # B: flint first, huggingface_hub reuses.
        hub = flint_convert("b")
        assert all(f["origin"] == "downloaded" for f in hub["files"]), hub["files"]
        ta, tb = tree(os.path.join(work, "a", "hub", folder)), tree(os.path.join(work, "b", "hub", folder))
        assert ta == tb, "B: cache trees differ:\n%s\n%s" % (ta, tb)
        print("B ok: flint's cache tree is identical to huggingface_hub's (%d entries)" % len(tb))
        log.truncate(0)
        log.seek(0)
        python("b", "from huggingface_hub import hf_hub_download\nfor f in %r: hf_hub_download(%r, f)" % (files, args.repo))
        log.flush()
        log.seek(0)
        requests = [line for line in log.read().splitlines() if '"' in line]
        gets = [r for r in requests if '"GET ' in r]
        assert not gets, "B: huggingface_hub downloaded again: %s" % gets
        print("B ok: huggingface_hub reused flint's files (%d HEAD requests, no GET)" % len(requests))
        snapshot = python("b", "from huggingface_hub import snapshot_download; print(snapshot_download(%r))" % args.repo,
                          HF_HUB_OFFLINE="1")
        assert snapshot == hub["snapshot"], (snapshot, hub["snapshot"])
        print("B ok: HF_HUB_OFFLINE=1 snapshot_download returns flint's snapshot folder")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
