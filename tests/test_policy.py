"""Route access rules (wighaven.auth.policy): parse_access, Access.allows,
Identity.may_use and describe()."""

from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth.policy import (
    ADMIN_ROLE, PUBLIC, SIGNED_IN, Access, Identity, parse_access,
)


def who(user="alice", roles=(), orgs=(), key_route=None, user_id=1):
    return Identity(user=user, user_id=user_id, roles=tuple(roles), orgs=tuple(orgs),
                    key_route=key_route)


class ParseAccessTests(SynchronousTestCase):
    def test_public(self):
        access = parse_access("public")
        self.assertIs(access, PUBLIC)
        self.assertTrue(access.public)
        self.assertEqual(access.kind, "public")

    def test_signed_in(self):
        access = parse_access("signed_in")
        self.assertIs(access, SIGNED_IN)
        self.assertFalse(access.public)
        self.assertEqual(access.requirements, ())

    def test_list_of_each_kind(self):
        access = parse_access(["role:team", "user:alice", "hf_org:acme", "user:hf:bob"])
        self.assertEqual(access.kind, "any_of")
        self.assertEqual(access.requirements, (
            ("role", "team"), ("user", "alice"), ("hf_org", "acme"), ("user", "hf:bob")))
        self.assertFalse(access.public)

    def test_value_characters_allowed(self):
        access = parse_access(["user:a.b_c@d-e:F9"])
        self.assertEqual(access.requirements, (("user", "a.b_c@d-e:F9"),))

    def test_comma_string_as_access_gives_it(self):
        access = parse_access("role:team, user:alice ,hf_org:acme,")
        self.assertEqual(access.requirements, (
            ("role", "team"), ("user", "alice"), ("hf_org", "acme")))

    def test_single_requirement_string(self):
        self.assertEqual(parse_access("role:team"), Access("any_of", (("role", "team"),)))

    def test_string_form_equals_list_form(self):
        self.assertEqual(parse_access("role:a,user:b"), parse_access(["role:a", "user:b"]))

    def test_unknown_word_refused_with_the_choices(self):
        with self.assertRaises(ValueError) as caught:
            parse_access("everyone")
        message = str(caught.exception)
        self.assertIn('"public"', message)
        self.assertIn('"signed_in"', message)
        self.assertIn("role:team", message)

    def test_empty_string_refused(self):
        self.assertRaises(ValueError, parse_access, "")

    def test_case_of_keywords_matters(self):
        self.assertRaises(ValueError, parse_access, "Public")
        self.assertRaises(ValueError, parse_access, "SIGNED_IN")

    def test_unknown_kind_refused_naming_the_item(self):
        with self.assertRaises(ValueError) as caught:
            parse_access(["group:team"])
        message = str(caught.exception)
        self.assertIn("'group:team'", message)
        self.assertIn("role:NAME", message)
        self.assertIn("hf_org:NAME", message)

    def test_unknown_kind_in_string_form_refused(self):
        with self.assertRaises(ValueError) as caught:
            parse_access("role:team,org:acme")
        self.assertIn("'org:acme'", str(caught.exception))

    def test_keyword_inside_a_list_refused(self):
        self.assertRaises(ValueError, parse_access, ["public"])
        self.assertRaises(ValueError, parse_access, "public,role:x")

    def test_empty_list_refused(self):
        with self.assertRaises(ValueError) as caught:
            parse_access([])
        self.assertIn("non-empty", str(caught.exception))

    def test_string_of_only_commas_and_colon_refused(self):
        self.assertRaises(ValueError, parse_access, ":")
        self.assertRaises(ValueError, parse_access, " , :, ")

    def test_bad_characters_refused(self):
        for item in ["role:te am", "role:", "user:al/ice", "role:a;b", "user:\u00e9l\u00e8ve",
                     "role: team", "user:" + "a" * 97]:
            with self.assertRaises(ValueError, msg=item) as caught:
                parse_access([item])
            self.assertIn(repr(item), str(caught.exception))

    def test_trailing_newline_in_list_item_refused(self):
        # The value pattern ends in "$", which also matches before a final "\n".
        with self.assertRaises(ValueError) as caught:
            parse_access(["role:x\n"])
        self.assertIn("is not a requirement", str(caught.exception))

    def test_longest_value_accepted(self):
        self.assertEqual(parse_access(["user:" + "a" * 96]).requirements, (("user", "a" * 96),))

    def test_non_string_items_refused(self):
        for item in [1, None, ["role:x"], {"role": "x"}, b"role:x"]:
            with self.assertRaises(ValueError, msg=repr(item)) as caught:
                parse_access([item])
            self.assertIn("is not a requirement", str(caught.exception))

    def test_one_bad_item_spoils_the_list(self):
        self.assertRaises(ValueError, parse_access, ["role:team", "bogus"])

    def test_other_types_refused(self):
        for value in [None, 1, True, ("role:x",), {"role": "x"}, b"public"]:
            with self.assertRaises(ValueError, msg=repr(value)):
                parse_access(value)


class AllowsTests(SynchronousTestCase):
    def test_public_allows_anonymous_and_everyone(self):
        self.assertTrue(PUBLIC.allows(None))
        self.assertTrue(PUBLIC.allows(who()))

    def test_signed_in_refuses_anonymous(self):
        self.assertFalse(SIGNED_IN.allows(None))

    def test_signed_in_allows_anyone_known(self):
        self.assertTrue(SIGNED_IN.allows(who()))
        self.assertTrue(SIGNED_IN.allows(who("hf:bob")))

    def test_requirements_refuse_anonymous(self):
        self.assertFalse(parse_access(["role:team"]).allows(None))

    def test_role(self):
        access = parse_access(["role:team"])
        self.assertTrue(access.allows(who(roles=["other", "team"])))
        self.assertFalse(access.allows(who(roles=["other"])))
        self.assertFalse(access.allows(who(roles=["Team"])))  # roles are exact
        self.assertFalse(access.allows(who()))

    def test_user_exact_name(self):
        access = parse_access(["user:alice"])
        self.assertTrue(access.allows(who("alice")))
        self.assertFalse(access.allows(who("Alice")))
        self.assertFalse(access.allows(who("alice2")))
        self.assertFalse(access.allows(who("hf:alice")))  # a Hugging Face sign-in is hf:alice

    def test_user_of_hugging_face(self):
        access = parse_access(["user:hf:alice"])
        self.assertTrue(access.allows(who("hf:alice")))
        self.assertFalse(access.allows(who("alice")))

    def test_hf_org_case_insensitive(self):
        self.assertTrue(parse_access(["hf_org:Acme"]).allows(who(orgs=["acme"])))
        self.assertTrue(parse_access(["hf_org:acme"]).allows(who(orgs=["other", "acme"])))
        self.assertFalse(parse_access(["hf_org:acme"]).allows(who(orgs=["acme-labs"])))
        self.assertFalse(parse_access(["hf_org:acme"]).allows(who()))

    def test_org_name_is_not_a_role_nor_user(self):
        self.assertFalse(parse_access(["hf_org:team"]).allows(who("team", roles=["team"])))
        self.assertFalse(parse_access(["role:acme"]).allows(who(orgs=["acme"])))
        self.assertFalse(parse_access(["user:acme"]).allows(who(orgs=["acme"], roles=["acme"])))

    def test_any_one_requirement_suffices(self):
        access = parse_access(["role:team", "user:bob", "hf_org:acme"])
        self.assertTrue(access.allows(who("bob")))
        self.assertTrue(access.allows(who(roles=["team"])))
        self.assertTrue(access.allows(who(orgs=["acme"])))
        self.assertFalse(access.allows(who("carol", roles=["x"], orgs=["y"])))

    def test_admin_passes_every_requirement(self):
        admin = who("root", roles=[ADMIN_ROLE])
        self.assertTrue(admin.is_admin)
        for access in [SIGNED_IN, PUBLIC, parse_access(["role:team"]),
                       parse_access(["user:alice"]), parse_access(["hf_org:acme"])]:
            self.assertTrue(access.allows(admin), access)

    def test_admin_role_is_exact(self):
        self.assertFalse(who(roles=["Admin"]).is_admin)
        self.assertFalse(who(roles=["administrator"]).is_admin)
        self.assertFalse(parse_access(["role:team"]).allows(who(roles=["Admin"])))


class MayUseTests(SynchronousTestCase):
    def test_unscoped_credential_good_everywhere(self):
        identity = who()
        self.assertTrue(identity.may_use("a"))
        self.assertTrue(identity.may_use("b"))
        self.assertTrue(identity.may_use(None))

    def test_scoped_key_only_for_its_route(self):
        identity = who(key_route="a")
        self.assertTrue(identity.may_use("a"))
        self.assertFalse(identity.may_use("b"))
        self.assertFalse(identity.may_use("A"))

    def test_scoped_key_not_for_gateway_pages(self):
        self.assertFalse(who(key_route="a").may_use(None))

    def test_scoped_admin_key_still_scoped(self):
        self.assertFalse(who(roles=[ADMIN_ROLE], key_route="a").may_use("b"))


class DescribeTests(SynchronousTestCase):
    def test_keywords(self):
        self.assertEqual(PUBLIC.describe(), "public")
        self.assertEqual(SIGNED_IN.describe(), "signed_in")

    def test_requirements_as_written(self):
        self.assertEqual(parse_access("role:team,user:hf:bob,hf_org:Acme").describe(),
                         ["role:team", "user:hf:bob", "hf_org:Acme"])

    def test_round_trip(self):
        for value in ["public", "signed_in", ["role:a", "user:b", "hf_org:c"]]:
            self.assertEqual(parse_access(parse_access(value).describe()), parse_access(value))


class IdentityTests(SynchronousTestCase):
    def test_frozen(self):
        import attrs

        identity = who()
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, identity, "user", "x")

    def test_session_id_not_in_repr(self):
        identity = Identity(user="alice", user_id=1, session_id="secret-session-id")
        self.assertNotIn("secret-session-id", repr(identity))

    def test_defaults(self):
        identity = Identity(user="alice", user_id=1)
        self.assertEqual((identity.roles, identity.via, identity.email, identity.orgs,
                          identity.key_route, identity.session_id),
                         ((), "session", None, (), None, None))
        self.assertFalse(identity.is_admin)
