//! The Kubernetes manifests in `docs/deploy` (see `docs/DEPLOY.md`) parse, and keep the properties the document
//! promises: default-deny networking with one allowed caller, restricted pod security, a read-only root
//! filesystem, non-root, and only environment variables the `axum_api` example actually reads.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use serde_json::Value;

fn docs(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
        if !v.is_null() {
            out.push(v);
        }
    }
    assert!(!out.is_empty(), "{file} holds no document");
    for d in &out {
        assert!(
            d["apiVersion"].is_string(),
            "{file}: a document without apiVersion: {d}"
        );
        assert!(d["kind"].is_string(), "{file}: a document without kind: {d}");
        assert!(
            d["metadata"]["name"].is_string(),
            "{file}: a document without metadata.name: {d}"
        );
    }
    out
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn namespace_enforces_the_restricted_pod_security_standard() {
    let ns = docs("namespace.yaml");
    let ns = of_kind(&ns, "Namespace");
    assert_eq!(ns.len(), 1);
    let labels = &ns[0]["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "{labels}");
}

#[test]
fn the_deployment_runs_non_root_read_only_without_privileges() {
    let all = docs("orders-api.yaml");
    let deployments = of_kind(&all, "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = &deployments[0]["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let containers = pod["containers"].as_array().unwrap();
    assert!(!containers.is_empty());
    for c in containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{}", c["name"]);
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{}: no memory limit",
            c["name"]
        );
        // Readiness is the dependency check (keys, Redis, audit writer), liveness only "the process is up".
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        // Secrets are mounted read-only.
        for m in c["volumeMounts"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let vol = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .unwrap();
            if vol.get("secret").is_some() {
                assert_eq!(m["readOnly"], true, "secret volume {name} mounted writable");
            }
        }
    }
}

#[test]
fn every_environment_variable_is_one_the_example_reads() {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/axum_api.rs")).unwrap();
    let all = docs("orders-api.yaml");
    let pod = &of_kind(&all, "Deployment")[0]["spec"]["template"]["spec"];
    let mut seen = 0;
    for c in pod["containers"].as_array().unwrap() {
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            assert!(
                source.contains(&format!("\"{name}\"")),
                "{name} is not read by examples/axum_api.rs"
            );
            seen += 1;
        }
    }
    assert!(seen >= 5);
}

#[test]
fn network_policy_denies_by_default_and_allows_one_service_account() {
    let all = docs("network-policy.yaml");
    let policies = of_kind(&all, "NetworkPolicy");
    let deny = policies
        .iter()
        .find(|p| p["spec"]["podSelector"] == serde_json::json!({}))
        .expect("a default-deny policy selecting every pod");
    let types = deny["spec"]["policyTypes"].as_array().unwrap();
    assert!(types.contains(&"Ingress".into()) && types.contains(&"Egress".into()));
    assert!(deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none());

    let ingress: Vec<_> = policies.iter().filter(|p| p["spec"]["ingress"].is_array()).collect();
    assert_eq!(ingress.len(), 1, "exactly one ingress allow");
    let from = ingress[0]["spec"]["ingress"][0]["from"].as_array().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["msec.dev/service-account"],
        "orders-web"
    );

    // The label the allow relies on is bound to the pod's service account by an admission policy.
    let vap = of_kind(&all, "ValidatingAdmissionPolicy");
    assert_eq!(vap.len(), 1);
    let expr = vap[0]["spec"]["validations"][0]["expression"].as_str().unwrap();
    assert!(expr.contains("serviceAccountName"), "{expr}");
    assert_eq!(of_kind(&all, "ValidatingAdmissionPolicyBinding").len(), 1);
}

#[test]
fn the_image_runs_as_non_root_on_a_minimal_base() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/Containerfile")).unwrap();
    let from: Vec<_> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.last().unwrap().contains("distroless"), "{from:?}");
    assert!(text.lines().any(|l| l.trim() == "USER 65532:65532"));
}
