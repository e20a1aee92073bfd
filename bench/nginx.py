"""The usual deployment's front: nginx + Lua reads `user.locale` and proxies to that language's `rasa run`.

The config is generated into a temp dir and nginx runs as a non-daemon child with its own pid file and temp
paths there, and its error log on stderr (the bench's log of that process), so it never touches a system
nginx. When nginx or its Lua module (or lua-cjson) is
missing, `find()` says why and the bench falls back to bench/proxy.py, which routes the same way.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Service

# Where distributions put dynamic modules (Debian/Ubuntu, Fedora/RHEL, Alpine, the upstream packages).
MODULE_DIRS = (
    "/usr/lib/nginx/modules",
    "/usr/lib64/nginx/modules",
    "/usr/share/nginx/modules",
    "/etc/nginx/modules",
    "/usr/local/nginx/modules",
)
# The Lua module needs the NDK loaded before it when both are dynamic.
MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
WEBHOOK_PATHS = ("/webhook/google", "/google_action")
RASA_PATH = "/webhooks/google/webhook"

# The routing, as the article writes it: read the body, take user.locale's first two letters, proxy to
# that language's upstream. Malformed bodies get a 400 naming the field; an unknown language goes to the
# default (first) one, like bench/proxy.py.
LUA_ROUTE = """
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            if not body then
                ngx.status = 400
                ngx.header.content_type = "application/json"
                ngx.say('{"error": "empty body, or larger than client_body_buffer_size"}')
                return ngx.exit(400)
            end
            local ok, data = pcall(cjson.decode, body)
            -- cjson decodes arrays to tables too: refuse them as the proxy does.
            if not ok or type(data) ~= "table" or string.match(body, "^%s*%[") then
                ngx.status = 400
                ngx.header.content_type = "application/json"
                ngx.say('{"error": "body is not a JSON object"}')
                return ngx.exit(400)
            end
            local user = data.user
            local locale = type(user) == "table" and user.locale or ""
            if type(locale) ~= "string" then locale = "" end
            local lang = string.lower(string.sub(locale, 1, 2))
            if not LANGS[lang] then lang = DEFAULT end
            ngx.var.upstream = "rasa_" .. lang
"""


@dataclass(frozen=True)
class Nginx:
    """An nginx binary able to run the Lua routing, with the module lines its config needs."""

    binary: str
    load_modules: tuple[str, ...]
    version: str


def _binary() -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _modules(built_with: str) -> tuple[str, ...] | None:
    """load_module paths for Lua, () when compiled in (OpenResty), None when not found."""
    if "lua-nginx-module" in built_with or "openresty" in built_with.lower():
        return ()
    for folder in MODULE_DIRS:
        paths = [Path(folder) / name for name in MODULES]
        if paths[1].is_file():
            return tuple(str(p) for p in paths if p.is_file())
    return None


def find() -> Nginx | str:
    """An nginx that passes `nginx -t` on the routing config, or the reason there is none."""
    binary = _binary()
    if binary is None:
        return "no nginx binary on PATH or in /usr/sbin"
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    found = re.search(r"nginx/(\S+)", built.stderr)
    version = found[1] if found else "(unknown version)"
    modules = _modules(built.stderr)
    if modules is None:
        return (
            f"nginx {version} has no Lua module (ngx_http_lua_module.so in none of {', '.join(MODULE_DIRS)})"
        )
    nginx = Nginx(binary, modules, version)
    with tempfile.TemporaryDirectory(prefix="bench-nginx-check-") as tmp:
        problem = check(nginx, Path(tmp), {"en": 1})
    return nginx if problem is None else f"nginx {version} cannot run the Lua routing: {problem}"


def render(nginx: Nginx, folder: Path, port: int, upstreams: Mapping[str, int]) -> str:
    """nginx.conf for `folder`: one upstream per language (keep-alive), the Lua routing on the webhook."""
    langs = list(upstreams)
    lua_langs = ", ".join(f'["{lang}"] = true' for lang in langs)
    user = ""
    if os.geteuid() == 0:
        # Root's workers would otherwise run as nobody and could not use the temp paths in `folder`.
        user = f"user {pwd.getpwuid(0).pw_name};"
    blocks = "\n".join(
        # Sanic closes idle connections after 5 s: nginx must drop them first, or a POST sent on a
        # connection being closed fails with 502 (nginx does not retry non-idempotent requests).
        f"    upstream rasa_{lang} {{ server 127.0.0.1:{p}; keepalive 32; keepalive_timeout 4s; }}"
        for lang, p in upstreams.items()
    )
    locations = "\n".join(
        f"""        location = {path} {{
            set $upstream "";
            rewrite_by_lua_block {{{LUA_ROUTE}            }}
            proxy_pass http://$upstream{RASA_PATH};
        }}"""
        for path in WEBHOOK_PATHS
    )
    return f"""# generated by bench/nginx.py
{chr(10).join(f"load_module {m};" for m in nginx.load_modules)}
{user}
daemon off;
worker_processes auto;
pid {folder}/nginx.pid;
# To stderr: the Service's log file, kept (and its tail shown) when nginx exits by itself.
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_body_buffer_size 64k;
    client_max_body_size 64k;
    keepalive_requests 100000;
    init_by_lua_block {{
        cjson = require "cjson"
        LANGS = {{ {lua_langs} }}
        DEFAULT = "{langs[0]}"
    }}
{blocks}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
{locations}
        location = /healthz {{ default_type application/json; return 200 '{{"status": "ok"}}'; }}
    }}
}}
"""


def _argv(nginx: Nginx, folder: Path) -> list[str]:
    return [
        nginx.binary,
        "-p",
        str(folder),
        "-e",
        str(folder / "error.log"),
        "-c",
        str(folder / "nginx.conf"),
    ]


def check(nginx: Nginx, folder: Path, upstreams: Mapping[str, int], port: int = 1) -> str | None:
    """`nginx -t` on the rendered config (init_by_lua runs too: a missing cjson fails here); None if ok."""
    (folder / "nginx.conf").write_text(render(nginx, folder, port, upstreams))
    done = subprocess.run([*_argv(nginx, folder), "-t", "-q"], capture_output=True, text=True, timeout=30)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")[-500:]


def start(nginx: Nginx, port: int, upstreams: Mapping[str, int]) -> Service:
    """nginx in the foreground on 127.0.0.1:`port` routing to `upstreams` (lang -> rasa port)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    problem = check(nginx, folder, upstreams, port)
    if problem is not None:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"nginx -t failed on {folder / 'nginx.conf'}: {problem}")
    return Service("nginx", _argv(nginx, folder), cwd=folder, owns=folder)
