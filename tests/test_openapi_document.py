"""The admin API's OpenAPI document (wighaven.web.openapi) as a document:
valid OpenAPI 3.1 with valid JSON Schemas, every reference resolving, the
paths and server the API has, and each operation answering what every
admin endpoint may answer. Whether the implementation keeps to it is
tests/test_admin_openapi.py's question."""

import json

import schemathesis
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from twisted.trial import unittest

from wighaven.web.openapi import openapi_document

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATHS = [
    "/routes", "/routes/{name}", "/upstreams/test", "/users", "/users/{username}",
    "/users/{username}/invite", "/api-keys", "/api-keys/{id}", "/sessions", "/sessions/{id}",
    "/audit", "/requests", "/requests/{id}", "/logs", "/status", "/config/export",
    "/config/import",
]


def operations(document):
    """(path, method, operation) of every operation."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def walk(value, where="#"):
    """(JSON pointer, dict) of every object in C{value}, depth first."""
    if isinstance(value, dict):
        yield where, value
        for key, child in value.items():
            yield from walk(child, "%s/%s" % (where, str(key).replace("~", "~0")
                                               .replace("/", "~1")))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, "%s/%d" % (where, index))


def resolve(document, pointer: str):
    """The value at a local reference (C{#/components/...}); LookupError when there is none."""
    if not pointer.startswith("#/"):
        raise LookupError("not a local reference: %r" % (pointer,))
    value = document
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise LookupError(pointer)
    return value


def deref(document, value):
    while isinstance(value, dict) and "$ref" in value:
        value = resolve(document, value["$ref"])
    return value


def schemas(document):
    """(where, schema) of every JSON Schema of the document: components and inline ones."""
    for name, schema in document["components"]["schemas"].items():
        yield "#/components/schemas/" + name, schema
    for where, node in walk(document["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            yield where + "/schema", node["schema"]
    for kind in ("parameters", "responses"):
        for where, node in walk(document["components"][kind]):
            if "schema" in node and isinstance(node["schema"], dict):
                yield "#/components/%s%s/schema" % (kind, where[1:]), node["schema"]


class DocumentTests(unittest.TestCase):

    def setUp(self):
        self.document = openapi_document()

    def test_json(self):
        """The document is plain JSON, as the API serves it."""
        self.assertEqual(json.loads(json.dumps(self.document)), self.document)

    def test_fresh_copy(self):
        """Each call makes a new document: a caller changing it changes no other's."""
        self.document["paths"].clear()
        self.assertEqual(list(openapi_document()["paths"]), PATHS)

    def test_openapi_3_1(self):
        """schemathesis takes it: valid against the OpenAPI 3.1 schema, every operation loads."""
        self.assertEqual(self.document["openapi"], "3.1.0")
        schema = schemathesis.openapi.from_dict(self.document)
        schema.validate()
        loaded = []
        for result in schema.get_all_operations():
            loaded.append(result.ok().label)
        self.assertEqual(len(loaded), len(list(operations(self.document))))
        schema.as_state_machine()  # the links are valid

    def test_json_schemas(self):
        """Every schema is a valid JSON Schema (draft 2020-12, OpenAPI 3.1's dialect)."""
        checked = 0
        for where, schema in schemas(self.document):
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as e:
                self.fail("%s: %s" % (where, e.message))
            checked += 1
        self.assertGreater(checked, 40)

    def test_refs_resolve(self):
        """Every $ref points at something in the document."""
        refs = [(where, node["$ref"]) for where, node in walk(self.document)
                if isinstance(node.get("$ref"), str)]
        self.assertGreater(len(refs), 50)
        for where, ref in refs:
            try:
                resolve(self.document, ref)
            except LookupError:
                self.fail("%s: $ref %r does not resolve" % (where, ref))

    def test_servers(self):
        self.assertEqual(self.document["servers"], [{"url": "/_gateway/api/v1"}])

    def test_paths(self):
        """Exactly the API's paths (not the document's own, /openapi.json), relative to it."""
        self.assertEqual(sorted(self.document["paths"]), sorted(PATHS))
        self.assertNotIn("/openapi.json", self.document["paths"])

    def test_operations(self):
        """Each operation: a unique operationId, a summary, a 2xx, a 401 and a 403."""
        ids = []
        for path, method, operation in operations(self.document):
            where = "%s %s" % (method.upper(), path)
            self.assertTrue(operation.get("operationId"), where)
            self.assertTrue(operation.get("summary"), where)
            ids.append(operation["operationId"])
            statuses = set(operation["responses"])
            self.assertTrue(any(s.startswith("2") for s in statuses), where)
            self.assertIn("401", statuses, where)
            self.assertIn("403", statuses, where)
            self.assertNotIn("default", statuses, where)
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(ids), 25)

    def test_error_bodies(self):
        """Every error answer has the gateway's error body."""
        error = self.document["components"]["schemas"]["Error"]
        self.assertEqual(sorted(error["required"]), ["detail", "error"])
        self.assertNotEqual(error.get("additionalProperties"), False)
        for path, method, operation in operations(self.document):
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                response = deref(self.document, response)
                self.assertEqual(response["content"]["application/json"]["schema"],
                                 {"$ref": "#/components/schemas/Error"},
                                 "%s %s %s" % (method.upper(), path, status))

    def test_path_parameters(self):
        """Every {name} of a path is a required path parameter, with its pattern or minimum."""
        for path, item in self.document["paths"].items():
            wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            declared = {}
            for parameter in item.get("parameters", []):
                parameter = deref(self.document, parameter)
                if parameter["in"] == "path":
                    declared[parameter["name"]] = parameter
            self.assertEqual(set(declared), wanted, path)
            for parameter in declared.values():
                self.assertTrue(parameter["required"])
                schema = parameter["schema"]
                self.assertTrue("pattern" in schema or schema.get("minimum") == 1, path)
        parameters = self.document["components"]["parameters"]
        self.assertEqual(parameters["RouteName"]["schema"]["pattern"], "^[a-z0-9-]{1,63}$")
        self.assertEqual(parameters["KeyId"]["schema"]["pattern"], "^[0-9a-f]{16}$")
        self.assertEqual(parameters["SessionId"]["schema"]["pattern"], "^[0-9a-f]{64}$")
        self.assertEqual(parameters["RequestId"]["schema"], {"type": "integer", "minimum": 1})

    def test_changes_take_if_match(self):
        """PATCH and DELETE take If-Match; item GETs, PATCHes and creations answer an ETag."""
        for path, method, operation in operations(self.document):
            names = {deref(self.document, p)["name"] for p in operation.get("parameters", [])}
            if method in ("patch", "delete"):
                self.assertIn("If-Match", names, path)
                self.assertIn("412", operation["responses"], path)
            if method != "get":
                self.assertIn("X-CSRF-Token", names, path)
            if method == "patch" or (method == "get" and path.endswith("}")
                                     and path != "/requests/{id}"):
                headers = operation["responses"]["200"].get("headers", {})
                self.assertIn("ETag", headers, path)

    def test_request_bodies_closed(self):
        """A JSON body's schema refuses unknown keys, as the server does (422)."""
        bodies = ("RouteCreate", "RoutePatch", "UpstreamWrite", "UpstreamTest", "UserCreate",
                  "UserPatch", "InviteCreate", "ApiKeyCreate")
        for name in bodies:
            self.assertIs(self.document["components"]["schemas"][name]["additionalProperties"],
                          False, name)

    def test_responses_open(self):
        """No response object refuses keys the server may add."""
        bodies = ("RouteCreate", "RoutePatch", "UpstreamWrite", "UpstreamTest", "UserCreate",
                  "UserPatch", "InviteCreate", "ApiKeyCreate")
        for name, schema in self.document["components"]["schemas"].items():
            if name in bodies:
                continue
            for where, node in walk(schema):
                self.assertNotEqual(node.get("additionalProperties"), False, name + where[1:])

    def test_route_rules(self):
        """The route's constraints are the config file's (wighaven.config.routes)."""
        route = self.document["components"]["schemas"]["RouteCreate"]["properties"]
        self.assertEqual(route["retries"]["minimum"], 0)
        self.assertEqual(route["retries"]["maximum"], 10)
        self.assertEqual((route["health_interval"]["minimum"],
                          route["health_interval"]["maximum"]), (1, 3600))
        upstream = self.document["components"]["schemas"]["UpstreamWrite"]["properties"]
        self.assertEqual((upstream["weight"]["minimum"], upstream["weight"]["maximum"]),
                         (1, 1000))
        # The body's schema with the components beside it, for its #/components/... refs.
        validator = Draft202012Validator(dict(self.document["components"]["schemas"]["RouteCreate"],
                                              components=self.document["components"]))
        good = {"name": "chat", "path": "/chat", "hosts": ["chat.example.org", "*.example.org"],
                "access": ["role:team", "user:hf:alice", "hf_org:acme"],
                "upstreams": [{"url": "https://user-chat.hf.space", "token": {"set": True}},
                              {"space": "user/chat"}]}
        self.assertEqual(list(validator.iter_errors(good)), [])
        for bad in ({"name": "Chat", "upstreams": [{"url": "https://x.hf.space"}]},
                    {"name": "chat", "upstreams": []},
                    {"name": "chat", "upstreams": [{"weight": 2}]},
                    {"name": "chat", "access": "everyone", "upstreams": [{"space": "u/s"}]},
                    {"name": "chat", "access": ["team"], "upstreams": [{"space": "u/s"}]},
                    {"name": "chat", "upstreams": [{"space": "u/s"}], "source": "store"}):
            self.assertNotEqual(list(validator.iter_errors(bad)), [], bad)

    def test_security(self):
        schemes = self.document["components"]["securitySchemes"]
        self.assertEqual(schemes["bearer"]["type"], "http")
        self.assertEqual(schemes["bearer"]["scheme"], "bearer")
        self.assertEqual((schemes["session"]["type"], schemes["session"]["in"],
                          schemes["session"]["name"]), ("apiKey", "cookie", "__Host-wh_session"))
        self.assertEqual(self.document["security"], [{"bearer": []}, {"session": []}])

