"""A plain HTTP client for Switchboard's peer API (Python's http.client), shared by the
end-to-end tests and the aiortc peer processes."""
import http.client
import json
import urllib.parse


class Client:
    def __init__(self, base_url, token=None, timeout=60, source=None):
        """`source`: a local address to send from (another loopback address, 127.0.0.2...)."""
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.token = token
        self.timeout = timeout
        self.source = source

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers, first Link header, body text); headers is case-insensitive."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                                source_address=(self.source, 0) if self.source else None)
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read().decode()
        connection.close()
        return response.status, response.headers, response.getheader("Link"), data

    def login(self, peer_id, key):
        status, _, _, body = self.request("POST", "/v1/login", json.dumps({"peer_id": peer_id, "key": key}),
                                          {"Content-Type": "application/json"})
        assert status == 200, body
        self.token = json.loads(body)["token"]
        return self
