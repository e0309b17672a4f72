use super::*;
use crate::identity::{ClientAddr, PeerIdentity, Principal};
use crate::spiffe::{SpiffeId, TrustDomain};
use http::{HeaderMap, Method};

fn eval(policy: &Policy, method: Method, path: &str, p: Option<&Principal>) -> Evaluation {
    let h = HeaderMap::new();
    let mut f = RequestFacts::new(&method, path, &h);
    if let Some(p) = p {
        f = f.with_principal(p);
    }
    policy.evaluate(&f)
}

fn user(scopes: &[&str]) -> Principal {
    Principal::builder("u").scopes(scopes.iter().copied()).build()
}

fn sample() -> Policy {
    Policy::builder()
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow("read", ["GET /v1/orders/{id}"], Requirement::scope("orders:read"))
        .allow("v1", ["/v1/{*rest}"], Requirement::Authenticated)
        .allow("admin", ["/v1/admin/{*rest}"], Requirement::role("admin"))
        .deny(
            "blocked subject",
            ["/v1/{*rest}"],
            Requirement::claim_equals("blocked", true),
        )
        .build()
        .unwrap()
}

#[test]
fn deny_by_default() {
    let p = sample();
    let e = eval(&p, Method::GET, "/other", Some(&user(&["orders:read"])));
    assert_eq!((e.outcome, e.code), (Outcome::Deny, ReasonCode::NO_MATCHING_RULE));
    assert_eq!(e.rejection().unwrap().status(), 403);
    // A method the route has no rule for is denied too.
    let e = eval(&p, Method::POST, "/healthz", None);
    assert_eq!(e.code, ReasonCode::NO_MATCHING_RULE);
}

#[test]
fn allow_and_scope_failures() {
    let p = sample();
    let e = eval(&p, Method::GET, "/healthz", None);
    assert_eq!((e.outcome, e.rule.as_deref()), (Outcome::Allow, Some("health")));

    let e = eval(&p, Method::GET, "/v1/orders/1", None);
    assert_eq!(e.code, ReasonCode::MISSING_CREDENTIALS);
    assert_eq!(e.rejection().unwrap().status(), 401);

    let e = eval(&p, Method::GET, "/v1/orders/1", Some(&user(&["x"])));
    assert_eq!(e.code, ReasonCode::INSUFFICIENT_SCOPE);
    assert_eq!(e.missing_scopes, ["orders:read"]);
    assert_eq!(e.route.as_deref(), Some("/v1/orders/{id}"));

    let e = eval(&p, Method::GET, "/v1/orders/1", Some(&user(&["orders:read"])));
    assert_eq!((e.outcome, e.rule.as_deref()), (Outcome::Allow, Some("read")));
}

#[test]
fn most_specific_route_decides() {
    let p = sample();
    // Authenticated is enough for /v1/anything, but /v1/admin/* requires the role even though the broader rule holds.
    let e = eval(&p, Method::GET, "/v1/things", Some(&user(&[])));
    assert_eq!(e.outcome, Outcome::Allow);
    let e = eval(&p, Method::GET, "/v1/admin/users", Some(&user(&[])));
    assert_eq!((e.outcome, e.code), (Outcome::Deny, ReasonCode::MISSING_ROLE));
    let admin = Principal::builder("a").roles(["admin"]).build();
    assert_eq!(
        eval(&p, Method::GET, "/v1/admin/users", Some(&admin)).outcome,
        Outcome::Allow
    );
}

#[test]
fn deny_before_allow() {
    let p = sample();
    let mut claims = serde_json::Map::new();
    claims.insert("blocked".into(), true.into());
    let blocked = Principal::builder("b").scopes(["orders:read"]).claims(claims).build();
    let e = eval(&p, Method::GET, "/v1/orders/1", Some(&blocked));
    assert_eq!((e.outcome, e.code), (Outcome::Deny, ReasonCode::POLICY_DENIED));
    assert_eq!(e.rule.as_deref(), Some("blocked subject"));
    // DENY rules apply at any specificity: also below the more specific admin route.
    let e = eval(&p, Method::GET, "/v1/admin/x", Some(&blocked));
    assert_eq!(e.code, ReasonCode::POLICY_DENIED);
}

#[test]
fn shadow_mode_and_shadow_rules() {
    let p = Policy::builder()
        .allow("read", ["GET /r"], Requirement::scope("r"))
        .mode(PolicyMode::Shadow)
        .build()
        .unwrap();
    let e = eval(&p, Method::GET, "/r", Some(&user(&[])));
    assert_eq!(
        (e.outcome, e.code),
        (Outcome::ShadowDeny, ReasonCode::INSUFFICIENT_SCOPE)
    );
    assert!(e.rejection().is_none());

    let p = Policy::builder()
        .allow("all", ["*"], Requirement::Public)
        .shadow_deny("try block", ["*"], Requirement::Public)
        .build()
        .unwrap();
    let e = eval(&p, Method::GET, "/x", None);
    assert_eq!(e.outcome, Outcome::Allow);
    assert_eq!(e.shadow_denials, [Arc::<str>::from("try block")]);
}

#[test]
fn peer_and_ip_requirements() {
    let td = TrustDomain::new("prod.example").unwrap();
    let p = Policy::builder()
        .allow(
            "billing only",
            ["grpc /shop.Billing"],
            Requirement::peer_spiffe_prefix(td.clone(), "/ns/billing"),
        )
        .allow(
            "office",
            ["/office"],
            Requirement::client_ip_in(["10.1.0.0/16".parse().unwrap()]),
        )
        .build()
        .unwrap();
    let h = HeaderMap::new();
    let m = Method::POST;
    let good = PeerIdentity::builder()
        .spiffe_id(SpiffeId::parse("spiffe://prod.example/ns/billing/sa/api").unwrap())
        .build();
    let other = PeerIdentity::builder()
        .spiffe_id(SpiffeId::parse("spiffe://dev.example/ns/billing/sa/api").unwrap())
        .build();
    let f = RequestFacts::new(&m, "/shop.Billing/Charge", &h);
    assert_eq!(p.evaluate(&f).code, ReasonCode::MISSING_PEER_IDENTITY);
    assert_eq!(p.evaluate(&f.with_peer(&good)).outcome, Outcome::Allow);
    assert_eq!(p.evaluate(&f.with_peer(&other)).code, ReasonCode::PEER_NOT_ALLOWED);

    let f = RequestFacts::new(&m, "/office", &h);
    assert_eq!(p.evaluate(&f).code, ReasonCode::CLIENT_IP_NOT_ALLOWED);
    let inside = ClientAddr::from_socket("10.1.2.3:1".parse().unwrap());
    let outside = ClientAddr::from_socket("10.2.2.3:1".parse().unwrap());
    assert_eq!(p.evaluate(&f.with_client(inside)).outcome, Outcome::Allow);
    assert_eq!(
        p.evaluate(&f.with_client(outside)).code,
        ReasonCode::CLIENT_IP_NOT_ALLOWED
    );
}

#[test]
fn any_combines_scopes() {
    let p = Policy::builder()
        .allow("a", ["/a"], Requirement::scope("x"))
        .allow("b", ["/a"], Requirement::all_scopes(["y", "z"]))
        .build()
        .unwrap();
    let e = eval(&p, Method::GET, "/a", Some(&user(&["y"])));
    assert_eq!(e.code, ReasonCode::INSUFFICIENT_SCOPE);
    assert_eq!(e.missing_scopes, ["x", "z"]);
}

#[test]
fn builder_errors_name_the_rule() {
    let err = Policy::builder()
        .allow("ok", ["/a"], Requirement::Public)
        .allow("broken", ["GET nope"], Requirement::Public)
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("rule #2 \"broken\": invalid route `GET nope`"), "{msg}");

    let err = Policy::builder()
        .allow("x", ["/a"], Requirement::Public)
        .allow("x", ["/b"], Requirement::Public)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("duplicate rule name"));

    let err = Policy::builder()
        .allow("e", ["/a"], Requirement::any_scope(Vec::<String>::new()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("rule #1 \"e\""));
}

const FILE: &str = r#"
mode = "enforce"

[[rule]]
name = "health"
effect = "allow"
routes = ["GET /healthz"]
require = "public"

[[rule]]
name = "read"
effect = "allow"
routes = ["GET /v1/orders/{id}", "grpc /shop.Orders/Get"]
require = { any = [{ scope = "orders:read" }, { all = [{ role = "support" }, { claim = { path = "tenant", equals = "acme" } }] }] }

[[rule]]
name = "billing peers"
effect = "allow"
routes = ["grpc /shop.Billing"]
require = { peer_spiffe_prefix = "spiffe://prod.example/ns/billing" }

[[rule]]
name = "bad network"
effect = "deny"
routes = ["*"]
when = { client_ip_in = ["192.0.2.0/24", "2001:db8::/32"] }
shadow = true

[[rule]]
name = "custom"
effect = "deny"
routes = ["/v1/{*rest}"]
when = { not = { custom = "business hours" } }
"#;

fn in_code() -> Policy {
    Policy::builder()
        .register_custom("business hours", |_| true)
        .allow("health", ["GET /healthz"], Requirement::Public)
        .allow(
            "read",
            ["GET /v1/orders/{id}", "grpc /shop.Orders/Get"],
            Requirement::any([
                Requirement::scope("orders:read"),
                Requirement::all([
                    Requirement::role("support"),
                    Requirement::claim_equals("tenant", "acme"),
                ]),
            ]),
        )
        .allow(
            "billing peers",
            ["grpc /shop.Billing"],
            Requirement::peer_spiffe_prefix(TrustDomain::new("prod.example").unwrap(), "/ns/billing"),
        )
        .shadow_deny(
            "bad network",
            ["*"],
            Requirement::client_ip_in(["192.0.2.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()]),
        )
        .deny(
            "custom",
            ["/v1/{*rest}"],
            Requirement::not(Requirement::custom("business hours", |_| true)),
        )
        .build()
        .unwrap()
}

#[test]
fn toml_equals_code() {
    let from_file = Policy::builder()
        .register_custom("business hours", |_| true)
        .load_toml(FILE)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(from_file, in_code());
}

#[cfg(feature = "yaml")]
#[test]
fn yaml_equals_code() {
    let yaml = r#"
mode: enforce
rules:
  - name: health
    effect: allow
    routes: ["GET /healthz"]
    require: public
  - name: read
    effect: allow
    routes: ["GET /v1/orders/{id}", "grpc /shop.Orders/Get"]
    require:
      any:
        - scope: orders:read
        - all:
            - role: support
            - claim: { path: tenant, equals: acme }
  - name: billing peers
    effect: allow
    routes: ["grpc /shop.Billing"]
    require: { peer_spiffe_prefix: "spiffe://prod.example/ns/billing" }
  - name: bad network
    effect: deny
    routes: ["*"]
    when: { client_ip_in: ["192.0.2.0/24", "2001:db8::/32"] }
    shadow: true
  - name: custom
    effect: deny
    routes: ["/v1/{*rest}"]
    when: { not: { custom: business hours } }
"#;
    let from_file = Policy::builder()
        .register_custom("business hours", |_| true)
        .load_yaml(yaml)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(from_file, in_code());

    let bad = "rules:\n  - name: x\n    effect: allow\n    routes: ['/a']\n    require: { scopes: a }\n";
    let err = Policy::from_yaml(bad).unwrap_err().to_string();
    assert!(err.starts_with("rule #1 \"x\": unknown variant `scopes`"), "{err}");
}

#[test]
fn bad_files_name_the_rule_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rule]]\nname = \"ok\"\neffect = \"allow\"\nroutes = [\"/a\"]\nrequire = \"public\"\n\n[[rule]]\nname = \"typo\"\neffect = \"allow\"\nroutes = [\"/b\"]\nrequire = { scopez = \"x\" }\n",
            "rule #2 \"typo\" (line 7): unknown variant `scopez`",
        ),
        (
            "[[rule]]\nname = \"cidr\"\neffect = \"deny\"\nroutes = [\"*\"]\nwhen = { client_ip_in = [\"10.0.0.0/33\"] }\n",
            "rule #1 \"cidr\" (line 1): invalid network \"10.0.0.0/33\"",
        ),
        (
            "[[rule]]\nname = \"spiffe\"\neffect = \"allow\"\nroutes = [\"*\"]\nrequire = { peer_spiffe_id = \"spiffe://Bad/x\" }\n",
            "rule #1 \"spiffe\" (line 1): invalid SPIFFE ID",
        ),
        (
            "[[rule]]\nname = \"which\"\neffect = \"allow\"\nroutes = [\"*\"]\nwhen = \"public\"\n",
            "rule #1 \"which\" (line 1): an allow rule needs `require`",
        ),
        (
            "[[rule]]\nname = \"c\"\neffect = \"allow\"\nroutes = [\"*\"]\nrequire = { custom = \"nope\" }\n",
            "rule #1 \"c\" (line 1): unknown custom requirement \"nope\"",
        ),
        (
            "[[rule]]\nname = \"route\"\neffect = \"allow\"\nroutes = [\"/a/{*x}/b\"]\nrequire = \"public\"\n",
            "rule #1 \"route\": invalid route `/a/{*x}/b`",
        ),
        (
            "[[rule]]\nname = \"extra\"\neffect = \"allow\"\nroutes = [\"/a\"]\nrequire = \"public\"\ncolour = \"red\"\n",
            "rule #1 \"extra\" (line 1): unknown field `colour`",
        ),
        ("mode = \"loud\"\n", "invalid policy file: unknown mode \"loud\""),
        ("[[rule]\n", "invalid policy file: TOML parse error at line 1"),
    ];
    for (text, want) in cases {
        let err = Policy::from_toml(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "got: {err}\nwant prefix: {want}");
    }
}
