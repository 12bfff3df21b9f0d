//! The Redis Cluster Kubernetes example (`deploy/kubernetes/cluster-{site,region}.yaml`): every
//! YAML document parses; the StatefulSets have the fields that make "pod i takes part i/N"
//! work (replicas = N, a headless Service, the PVC, the config template and start script from
//! the ConfigMap, a writable place for the rendered config); and the container's own start
//! script, run for each ordinal 0..N-1 with that pod's hostname, renders a config that passes
//! `georelay check` and names that ordinal's part. A hostname without an ordinal, or an ordinal
//! past N, fails with a clear message.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::prom::{repo_root, require, run, run_ok};

/// Every YAML document of `file`, as JSON (PyYAML, which kubernetes-validate depends on; a
/// missing PyYAML fails here, scripts/install-deps.sh installs it).
fn documents(file: &Path) -> Vec<Value> {
    require("python3", "Debian package `python3`");
    let probe = run(Command::new("python3").args(["-c", "import yaml"]));
    assert!(
        probe.status.success(),
        "PyYAML is not installed for python3; run scripts/install-deps.sh (it comes with \
         kubernetes-validate)"
    );
    let out = run_ok(Command::new("python3").arg("-c").arg(
        "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
    ).arg(file));
    let docs: Vec<Value> = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("{}: not YAML documents ({e}): {out}", file.display()));
    assert!(
        docs.iter().all(|d| d["kind"].is_string()),
        "{}: a document without kind",
        file.display()
    );
    docs
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// Checks the StatefulSet of `file` and returns (its name, N, its ConfigMap's data).
fn statefulset(file: &str, docs: &[Value]) -> (String, u64, Value) {
    let sets = of_kind(docs, "StatefulSet");
    assert_eq!(sets.len(), 1, "{file}: one StatefulSet");
    let sts = sets[0];
    let name = text(&sts["metadata"]["name"], "metadata.name").to_string();
    let spec = &sts["spec"];
    let n = spec["replicas"]
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: spec.replicas is not a number"));
    assert!(n >= 2, "{file}: N = {n} agents, an example of several");
    // The headless Service the pods' stable names come from.
    let service = text(&spec["serviceName"], "spec.serviceName");
    let headless = of_kind(docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == service)
        .unwrap_or_else(|| panic!("{file}: no Service {service} (spec.serviceName)"));
    assert_eq!(
        headless["spec"]["clusterIP"], "None",
        "{file}: {service} is headless"
    );
    // The selector picks the template's pods.
    let labels = &spec["template"]["metadata"]["labels"];
    let selector = spec["selector"]["matchLabels"]
        .as_object()
        .unwrap_or_else(|| panic!("{file}: no spec.selector.matchLabels"));
    for (k, v) in selector {
        assert_eq!(
            &labels[k], v,
            "{file}: the template lacks selector label {k}"
        );
    }
    assert_eq!(
        headless["spec"]["selector"].as_object(),
        Some(selector),
        "{file}: the headless Service selects the StatefulSet's pods"
    );
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{file}: one container");
    let c = &containers[0];
    assert_eq!(
        c["command"],
        serde_json::json!(["/bin/sh", "/etc/georelay/start.sh"]),
        "{file}: the container renders its config with start.sh"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{file}: nothing mounted at {path}"))
    };
    assert_eq!(mount("/var/lib/georelay")["name"], "data");
    let rendered = text(
        &mount("/run/georelay")["name"],
        "the rendered config's volume",
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{file}: no volume {name}"))
    };
    assert!(
        volume(rendered)["emptyDir"].is_object(),
        "{file}: the rendered config goes to an emptyDir (the root filesystem is read-only)"
    );
    for (path, key) in [
        ("/etc/georelay/start.sh", "start.sh"),
        ("/etc/georelay/georelay.toml.in", "georelay.toml.in"),
    ] {
        let m = mount(path);
        assert_eq!(m["subPath"], key, "{file}: {path} is the ConfigMap's {key}");
        let cm = text(
            &volume(text(&m["name"], "volume"))["configMap"]["name"],
            "configMap",
        );
        assert!(
            of_kind(docs, "ConfigMap")
                .iter()
                .any(|d| d["metadata"]["name"] == cm && d["data"][key].is_string()),
            "{file}: ConfigMap {cm} has no {key}"
        );
    }
    let claims = spec["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert!(claims.iter().any(|t| t["metadata"]["name"] == "data"));
    let cm_name = text(
        &volume(text(&mount("/etc/georelay/start.sh")["name"], "volume"))["configMap"]["name"],
        "configMap",
    );
    let data = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"] == cm_name)
        .map(|d| d["data"].clone())
        .expect("the ConfigMap");
    (name, n, data)
}

/// Runs the container's start script as pod `hostname` would, with the paths moved into
/// `dir` and `georelay run` replaced by `georelay check`: (exit status, output, rendered config).
fn start_as(data: &Value, hostname: &str, dir: &Path, certs: &Path) -> (bool, String, String) {
    let template = text(&data["georelay.toml.in"], "georelay.toml.in")
        .replace("/etc/georelay/certs/", &format!("{}/", certs.display()));
    let etc = dir.join("etc");
    let rendered = dir.join("run");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&rendered).unwrap();
    std::fs::write(etc.join("georelay.toml.in"), template).unwrap();
    let script = text(&data["start.sh"], "start.sh");
    let run_line = "exec /usr/local/bin/georelay run --config /run/georelay/georelay.toml";
    assert!(script.contains(run_line), "start.sh ends in: {run_line}");
    let script = script
        .replace(
            run_line,
            &format!(
                "exec {} check --config /run/georelay/georelay.toml",
                env!("CARGO_BIN_EXE_georelay")
            ),
        )
        .replace("/etc/georelay/", &format!("{}/", etc.display()))
        .replace("/run/georelay/", &format!("{}/", rendered.display()));
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("HOSTNAME", hostname));
    let config = std::fs::read_to_string(rendered.join("georelay.toml")).unwrap_or_default();
    let _ = std::fs::remove_file(rendered.join("georelay.toml"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), output, config)
}

#[test]
fn every_kubernetes_manifest_document_parses() {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "namespace, site, region and the cluster pair: {files:?}"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for f in &files {
        let docs = documents(f);
        assert!(!docs.is_empty(), "{}: no document", f.display());
        for d in &docs {
            assert!(
                d["apiVersion"].is_string() && d["metadata"]["name"].is_string(),
                "{}: a document without apiVersion or metadata.name: {d}",
                f.display()
            );
            kinds.insert(text(&d["kind"], "kind").to_string());
        }
    }
    for k in ["Namespace", "ConfigMap", "Secret", "StatefulSet", "Service"] {
        assert!(kinds.contains(k), "no {k} in deploy/kubernetes: {kinds:?}");
    }
}

#[test]
fn cluster_statefulsets_take_their_part_from_the_pod_ordinal() {
    require("sh", "a POSIX shell");
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_georelay"))
            .args(["certs", "init", "--dir"])
            .arg(&certs)
            .args(["--nodes", "site-a,region-b"]),
    );
    let mut ns = Vec::new();
    for (file, side) in [
        ("cluster-site.yaml", "site"),
        ("cluster-region.yaml", "region"),
    ] {
        let docs = documents(&root.join("deploy/kubernetes").join(file));
        let (name, n, data) = statefulset(file, &docs);
        ns.push(n);
        for i in 0..n {
            let pod = format!("{name}-{i}");
            let (ok, out, config) = start_as(&data, &pod, dir.path(), &certs);
            assert!(
                ok,
                "{file}: pod {pod}: georelay check failed:\n{out}\n{config}"
            );
            let want = match side {
                "site" => format!("lanes = \"{i}/{n}\""),
                _ => format!("georelay-cluster-site-quic-{i}."),
            };
            assert!(
                config.contains(&want),
                "{file}: pod {pod}'s config lacks {want}:\n{config}"
            );
            assert!(
                !config.contains("@ORDINAL@"),
                "{file}: pod {pod}: a placeholder left"
            );
        }
        // A hostname without an ordinal stops the container with one line saying so.
        let (ok, out, _) = start_as(&data, "georelay", dir.path(), &certs);
        assert!(!ok && out.contains("no pod ordinal"), "{file}: {out}");
        if side == "site" {
            // Scaled up without changing N in the config: pod N is refused by the config check.
            let (ok, out, _) = start_as(&data, &format!("{name}-{n}"), dir.path(), &certs);
            assert!(
                !ok && out.contains("upstream.lanes"),
                "{file}: pod {n}: {out}"
            );
            // One QUIC Service per site pod, each selecting its pod.
            for i in 0..n {
                let svc = format!("{name}-quic-{i}");
                let s = of_kind(&docs, "Service")
                    .into_iter()
                    .find(|s| s["metadata"]["name"] == svc.as_str())
                    .unwrap_or_else(|| panic!("{file}: no Service {svc}"));
                assert_eq!(
                    s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
                    format!("{name}-{i}").as_str(),
                    "{file}: {svc} selects pod {i}"
                );
                assert_eq!(s["spec"]["ports"][0]["protocol"], "UDP");
            }
        }
    }
    assert_eq!(ns[0], ns[1], "as many region pods as site pods");
}
