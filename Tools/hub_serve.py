#!/usr/bin/env python3
"""Serve local model folders on 127.0.0.1 with the Hugging Face Hub protocol, for demos and for checking
`flint convert hf:...` against the real `huggingface_hub` client (both pointed at it with HF_ENDPOINT).

    Tools/hub_serve.py google/flan-t5-small=./flan-t5-small [OWNER/NAME=FOLDER ...] [--port 8765] [--token T]
    HF_ENDPOINT=http://127.0.0.1:8765 flint convert hf:google/flan-t5-small -o small.flint

What it speaks (as huggingface_hub's file_download.py / hf_api.py expect): GET /api/models/{repo}/revision/{rev}
→ {"id", "sha", "siblings": [{"rfilename"}]}; HEAD/GET /{repo}/resolve/{rev}/{file} with ETag (git blob sha1),
X-Repo-Commit, Content-Length; "LFS" files (weights, *.model, anything over 1 MB) answer 302 to /cdn/... with
X-Linked-Etag (sha256) and X-Linked-Size; Range requests (206); X-Error-Code RepoNotFound / RevisionNotFound /
EntryNotFound / GatedRepo. The commit sha is derived from the folder's file names and contents. Standard library only.
"""
import argparse
import hashlib
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".model", ".onnx")


class Repo:
    def __init__(self, repo_id, folder):
        self.id = repo_id
        self.folder = folder
        self.files = {}
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                if rel.startswith(".") or "/." in rel:
                    continue
                self.files[rel] = path
        commit = hashlib.sha1()
        self.meta = {}
        for rel in sorted(self.files):
            data = open(self.files[rel], "rb").read()
            lfs = rel.endswith(LFS_SUFFIXES) or len(data) > 1_000_000
            git_sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            sha256 = hashlib.sha256(data).hexdigest() if lfs else None
            self.meta[rel] = (len(data), git_sha, sha256)
            commit.update(rel.encode() + b"\0" + git_sha.encode())
        self.commit = commit.hexdigest()


class Handler(BaseHTTPRequestHandler):
    repos = {}
    token = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("hub_serve: %s %s\n" % (self.address_string(), fmt % args))

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def find_repo(self, path):
        for repo_id, repo in self.repos.items():
            if path.startswith(repo_id + "/"):
                return repo, path[len(repo_id) + 1:]
        return None, None

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path.startswith("/cdn/"):
            repo, rel = self.find_repo(path[5:])
            if repo is None or rel not in repo.files:
                return self.error(404, "EntryNotFound", "no such object")
            return self.send_file(repo, rel)
        if self.token is not None and self.headers.get("Authorization") != "Bearer " + self.token:
            return self.error(401, "GatedRepo", "Access to this model is restricted; send the right token.")
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/"):]
            repo_id, sep, revision = rest.partition("/revision/")
            repo = self.repos.get(repo_id)
            if repo is None or not sep:
                return self.error(404, "RepoNotFound", "Repository not found")
            if revision not in ("main", repo.commit):
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
            body = json.dumps({"id": repo.id, "modelId": repo.id, "sha": repo.commit,
                               "siblings": [{"rfilename": f} for f in sorted(repo.files)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        repo, rest = self.find_repo(path[1:])
        if repo is None or not rest.startswith("resolve/"):
            return self.error(404, "RepoNotFound", "Repository not found")
        revision, _, rel = rest[len("resolve/"):].partition("/")
        if revision not in ("main", repo.commit):
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        if rel not in repo.files:
            return self.error(404, "EntryNotFound", "%s does not exist on %s" % (rel, revision))
        size, git_sha, sha256 = repo.meta[rel]
        if sha256 is not None:
            host = self.headers.get("Host", "127.0.0.1")
            self.send_response(302)
            self.send_header("Location", "http://%s/cdn/%s/%s" % (host, repo.id, urllib.parse.quote(rel)))
            self.send_header("X-Linked-Etag", '"%s"' % sha256)
            self.send_header("X-Linked-Size", str(size))
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", '"%s"' % git_sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_file(repo, rel, extra={"X-Repo-Commit": repo.commit})

    def send_file(self, repo, rel, extra=None):
        size, git_sha, sha256 = repo.meta[rel]
        start = 0
        status = 200
        headers = {"ETag": '"%s"' % (sha256 or git_sha), "Accept-Ranges": "bytes"}
        headers.update(extra or {})
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit():
            start = int(rng[6:-1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, size - 1, size)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(repo.files[rel], "rb") as f:
            f.seek(start)
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                self.wfile.write(chunk)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repos", nargs="+", metavar="OWNER/NAME=FOLDER")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN (as a gated repository does)")
    args = parser.parse_args()
    for spec in args.repos:
        repo_id, sep, folder = spec.partition("=")
        if not sep or not os.path.isdir(folder):
            parser.error("%s: expected OWNER/NAME=FOLDER with an existing folder" % spec)
        Handler.repos[repo_id] = Repo(repo_id, folder)
    Handler.token = args.token
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    for repo in Handler.repos.values():
        print("serving %s (commit %s, %d files) from %s" % (repo.id, repo.commit, len(repo.files), repo.folder))
    print("HF_ENDPOINT=http://127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
