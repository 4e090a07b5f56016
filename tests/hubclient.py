"""A person using the course hub over HTTP, as a browser would (login form, cookies, xsrf), for the hub tests."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
import weakref

import requests


class HubUser:
    def __init__(self, base: str, name: str, password: str):
        self.base, self.name, self.s = base.rstrip("/"), name, requests.Session()
        weakref.finalize(self, self.s.close)  # its pooled connections close with it, not in a later test's GC
        self.password = password
        self.token = ""

    def login(self) -> int:
        page = self.s.get(f"{self.base}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        form = {"username": self.name, "password": self.password, "_xsrf": xsrf}
        r = self.s.post(f"{self.base}/hub/login", data=form, allow_redirects=False, timeout=30)
        return r.status_code

    def _hub(self, method: str, path: str, **kw) -> requests.Response:
        xsrf = self.s.cookies.get("_xsrf", path="/hub/")
        return self.s.request(method, f"{self.base}/hub/api{path}", headers={"X-XSRFToken": xsrf}, timeout=60, **kw)

    def start_server(self, timeout: float = 120) -> None:
        r = self._hub("POST", f"/users/{self.name}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            info = self._hub("GET", "/user").json()
            if info.get("servers", {}).get("", {}).get("ready"):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{self.name}'s server did not become ready in {timeout} s")
        r = self._hub("POST", f"/users/{self.name}/tokens", json={"note": "hub test", "expires_in": 3600})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """Call the person's own server (token auth needs no xsrf)."""
        url = f"{self.base}/user/{self.name}{path}"
        return requests.request(method, url, headers={"Authorization": f"token {self.token}"}, timeout=120, **kw)

    def nbgrader(self, action: str, course_id: str, assignment: str = "") -> list[dict]:
        if action == "list":
            r = self.api("GET", "/assignments", params={"course_id": course_id})
        else:
            r = self.api("POST", f"/assignments/{action}", data={"course_id": course_id, "assignment_id": assignment})
        body = r.json()
        assert body["success"], body
        return body["value"]

    def put_notebook(self, path: str, nb: dict) -> None:
        r = self.api("PUT", f"/api/contents/{path}", json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text

    def run_python(self, code: str, timeout: float = 120) -> str:
        """Run ``code`` in a new kernel of the person's server (as that person); its stdout."""
        r = self.api("POST", "/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        try:
            return asyncio.run(self._execute(kid, code, timeout))
        finally:
            self.api("DELETE", f"/api/kernels/{kid}")

    async def _execute(self, kid: str, code: str, timeout: float) -> str:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"{self.base.replace('http', 'ws', 1)}/user/{self.name}/api/kernels/{kid}/channels"
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "username": self.name, "session": uuid.uuid4().hex, "msg_type": "execute_request",
                  "version": "5.3", "date": ""}  # fmt: skip
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        await ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                           "channel": "shell", "buffers": []}))  # fmt: skip
        out, end = [], time.monotonic() + timeout
        while time.monotonic() < end:
            raw = await asyncio.wait_for(ws.read_message(), timeout=end - time.monotonic())
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        ws.close()
        return "".join(out)
