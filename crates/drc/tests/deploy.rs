//! The deployment files checked offline (issue #18): no Docker engine or image registry is
//! reachable where these tests run, so they check what can be known without one — the
//! Dockerfile's stages, that docker-compose.yml parses and every file it mounts exists, that
//! its topology loads with `drc check --offline`, that published ports do not clash, that
//! Prometheus scrapes exactly the daemons' metrics addresses and loads the alert rules, that
//! Grafana's provisioning finds the dashboard, and the systemd unit's settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use yaml_rust2::{Yaml, YamlLoader};

/// The repository's top directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn to_json(y: &Yaml) -> Json {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::String(s.clone()), Json::Number),
        Yaml::Integer(i) => Json::from(*i),
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Boolean(b) => Json::Bool(*b),
        Yaml::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Json::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("unexpected YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Json::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unexpected YAML node {y:?}"),
    }
}

/// A YAML file of the repository (one document), as JSON.
pub fn yaml(rel: &str) -> Json {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel} holds one YAML document");
    to_json(&docs[0])
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(host path, container path)` of a service's bind mounts (`./x:/y[:ro]`).
fn mounts(service: &Json) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap_or_default().to_string();
            let container = parts.next().unwrap_or_default().to_string();
            (host, container)
        })
        .collect()
}

/// The value of `--name=value` in a command list.
fn flag(command: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    command
        .iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

/// The value after `--name` in a command list.
fn arg_after(command: &[String], name: &str) -> Option<String> {
    let at = command.iter().position(|a| a == name)?;
    command.get(at + 1).cloned()
}

fn services() -> serde_json::Map<String, Json> {
    yaml("docker-compose.yml")["services"]
        .as_object()
        .cloned()
        .expect("docker-compose.yml has services")
}

/// The topology the compose daemons mount, loaded like `drc run` loads it (password from the
/// daemons' environment).
fn compose_topology() -> drc_config::Config {
    let text = read("config/compose.toml");
    let env = |name: &str| (name == "DRC_DB_PASSWORD").then(|| "drc-demo".to_string());
    drc_config::Config::parse(&text, &env).expect("config/compose.toml is valid")
}

#[test]
fn the_dockerfile_builds_drc_and_runs_it_as_a_non_root_user() {
    let text = read("Dockerfile");
    // Stages: the lines from one FROM to the next.
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    let mut continued = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(l) = line.strip_suffix('\\') {
            continued.push_str(l);
            continue;
        }
        let full = std::mem::take(&mut continued) + line;
        if let Some(from) = full.strip_prefix("FROM ") {
            let alias = from.split(" AS ").nth(1).unwrap_or("").trim().to_string();
            stages.push((alias, Vec::new()));
        } else if let Some((_, lines)) = stages.last_mut() {
            lines.push(full);
        }
    }
    assert_eq!(stages.len(), 2, "a build and a runtime stage: {stages:?}");
    let (build_name, build) = &stages[0];
    let (_, runtime) = &stages[1];
    assert!(
        text.contains("FROM debian:bookworm-slim"),
        "slim Debian runtime"
    );
    let workdir = build
        .iter()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("build WORKDIR");
    assert!(
        build
            .iter()
            .any(|l| l.contains("cargo build --release --locked -p drc")),
        "the build stage builds drc with the lock file: {build:?}"
    );
    // The binary the runtime copies is the one the build stage wrote.
    let copy = runtime
        .iter()
        .find(|l| l.starts_with(&format!("COPY --from={build_name} ")))
        .expect("runtime copies from the build stage");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(parts[2], format!("{workdir}/target/release/drc"));
    assert_eq!(parts[3], "/usr/local/bin/drc");
    // Runs as `drc`, a user the runtime stage creates.
    let users: Vec<&str> = runtime
        .iter()
        .filter_map(|l| l.strip_prefix("USER "))
        .collect();
    assert_eq!(users, ["drc"], "one USER, not root");
    assert!(runtime
        .iter()
        .any(|l| l.contains("useradd") && l.contains(" drc")));
    let entrypoint = runtime
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    assert_eq!(entrypoint, ["drc"]);
    assert!(runtime.iter().any(|l| l.contains("/etc/drc")));

    let ignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    for must in ["target/", ".git/"] {
        assert!(ignored.contains(must), ".dockerignore lists {must}");
    }
    for needed in ["crates/", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.contains(needed), "{needed} is needed by the build");
    }
}

#[test]
fn compose_centers_are_configured_for_drc() {
    let services = services();
    let centers = compose_topology();
    let n = centers.centers.len();
    let mut ids = BTreeSet::new();
    let mut domains = BTreeSet::new();
    let mut offsets = BTreeSet::new();
    for c in &centers.centers {
        let db = &services[&format!("db-{}", c.name)];
        assert_eq!(db["image"], "mariadb:10.11");
        let cmd = strings(&db["command"]);
        for (name, value) in [
            ("binlog-format", "ROW"),
            ("binlog-row-image", "FULL"),
            ("binlog-row-metadata", "FULL"),
        ] {
            assert_eq!(flag(&cmd, name).as_deref(), Some(value), "db-{}", c.name);
        }
        assert!(
            flag(&cmd, "log-bin").is_some(),
            "db-{} writes a binlog",
            c.name
        );
        assert!(ids.insert(flag(&cmd, "server-id").expect("server-id")));
        assert!(domains.insert(flag(&cmd, "gtid-domain-id").expect("domain")));
        assert_eq!(
            flag(&cmd, "auto-increment-increment"),
            Some(n.to_string()),
            "the increment is the number of centers"
        );
        let offset: usize = flag(&cmd, "auto-increment-offset")
            .and_then(|o| o.parse().ok())
            .expect("offset");
        assert!((1..=n).contains(&offset) && offsets.insert(offset));
        // The topology names this service.
        assert!(c.display_url.contains(&format!("@db-{}:3306", c.name)));
    }
}

#[test]
fn compose_daemons_run_every_center_with_a_valid_topology() {
    let services = services();
    let centers = compose_topology();
    let mut daemons = BTreeSet::new();
    for (name, s) in &services {
        let cmd = strings(&s["command"]);
        if cmd.first().map(String::as_str) != Some("run") {
            continue;
        }
        let center = arg_after(&cmd, "--center").expect("--center");
        assert!(
            centers.center(&center).is_some(),
            "{name} runs center {center}"
        );
        assert_eq!(arg_after(&cmd, "--start").as_deref(), Some("now"));
        let config = arg_after(&cmd, "--config").expect("--config");
        let mounted = mounts(s)
            .into_iter()
            .find(|(_, c)| *c == config)
            .unwrap_or_else(|| panic!("{name} mounts its --config {config}"));
        assert_eq!(mounted.0, "./config/compose.toml");
        assert_eq!(s["build"], ".", "{name} runs the image of the Dockerfile");
        // It publishes the port its center's metrics_listen binds inside the container.
        let port = centers
            .center(&center)
            .and_then(|c| c.metrics_listen)
            .map(|a| a.port().to_string())
            .expect("metrics_listen");
        let published = strings(&s["ports"]);
        assert!(
            published.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{name} publishes {port}: {published:?}"
        );
        // The daemon's environment makes the topology load, as `drc check --offline` sees it.
        let mut check = Command::new(env!("CARGO_BIN_EXE_drc"));
        check
            .args(["check", "--offline", "--json", "--config"])
            .arg(root().join("config/compose.toml"))
            .env_remove("DRC_DB_PASSWORD");
        for (k, v) in s["environment"].as_object().expect("environment") {
            check.env(k, v.as_str().expect("string value"));
        }
        let out = check.output().expect("drc check runs");
        let findings: Json = serde_json::from_slice(&out.stdout).expect("JSON findings");
        assert_eq!(out.status.code(), Some(0), "{name}: {findings}");
        assert_eq!(findings[0]["severity"], "info", "{findings}");
        assert!(daemons.insert(center));
    }
    let all: BTreeSet<String> = centers.centers.iter().map(|c| c.name.clone()).collect();
    assert_eq!(daemons, all, "one daemon per center");
}

#[test]
fn drc_check_offline_reports_every_problem_without_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = read("config/compose.toml")
        .replace("mysql://root@db-b:3306", "postgres://db-b")
        .replace("databases = [\"shop\"]", "databases = []");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["check", "--offline", "--config"])
        .arg(&path)
        .env("DRC_DB_PASSWORD", "x")
        .output()
        .expect("drc check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("center[1].mysql"), "{text}");
    assert!(text.contains("replication.databases"), "{text}");
    assert!(text.contains("2 errors"), "{text}");
}

#[test]
fn compose_published_ports_do_not_clash_and_every_mounted_file_exists() {
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    for (name, s) in services() {
        for p in strings(&s["ports"]) {
            // [ip:]host:container
            let parts: Vec<&str> = p.split(':').collect();
            let host = match parts.as_slice() {
                [ip, host, _] => format!("{ip}:{host}"),
                [host, _] => format!("0.0.0.0:{host}"),
                _ => panic!("{name}: port {p}"),
            };
            if let Some(other) = published.insert(host.clone(), name.clone()) {
                panic!("{host} is published by {name} and {other}");
            }
        }
        for (host, _) in mounts(&s) {
            assert!(
                root().join(&host).is_file(),
                "{name} mounts {host}, which exists"
            );
        }
    }
    assert!(
        published.len() >= 8,
        "databases, daemons, prometheus, grafana"
    );
}

#[test]
fn prometheus_scrapes_the_daemons_and_loads_the_alert_rules() {
    let services = services();
    let centers = compose_topology();
    let prom = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(strings(&prom["rule_files"]), ["alerts.yml"]);
    // Both files land in one directory of the Prometheus container.
    let mounted = mounts(&services["prometheus"]);
    let dir_of = |file: &str| {
        mounted
            .iter()
            .find(|(h, _)| h == file)
            .map(|(_, c)| Path::new(c).parent().map(Path::to_path_buf))
            .unwrap_or_else(|| panic!("prometheus mounts {file}"))
    };
    assert_eq!(
        dir_of("./deploy/prometheus/prometheus.yml"),
        dir_of("./deploy/prometheus/alerts.yml")
    );
    let mut targets = BTreeSet::new();
    for job in prom["scrape_configs"].as_array().expect("scrape_configs") {
        for sc in job["static_configs"].as_array().expect("static_configs") {
            targets.extend(strings(&sc["targets"]));
        }
    }
    // Each center's daemon service, at the port of the center's metrics_listen.
    let want: BTreeSet<String> = centers
        .centers
        .iter()
        .map(|c| {
            let addr = c.metrics_listen.expect("metrics_listen");
            let service = services
                .iter()
                .find(|(_, s)| {
                    arg_after(&strings(&s["command"]), "--center").as_deref()
                        == Some(c.name.as_str())
                })
                .map(|(n, _)| n.clone())
                .expect("a daemon service");
            assert!(
                addr.ip().is_unspecified(),
                "{} listens on all addresses",
                c.name
            );
            format!("{service}:{}", addr.port())
        })
        .collect();
    assert_eq!(targets, want);

    // The rules parse; promtool validates them further when it is installed (Debian package
    // `prometheus`; the test does not need it).
    let rules = yaml("deploy/prometheus/alerts.yml");
    let n: usize = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(n >= 5, "link down, lag, conflicts, leaders, errors");
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("promtool not run ({e}); alerts.yml only parsed"),
    }
}

#[test]
fn grafana_provisioning_finds_the_dashboard_and_its_data_source() {
    let services = services();
    let mounted = mounts(&services["grafana"]);
    let provider = yaml("deploy/grafana/provisioning/dashboards/drc.yml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path")
        .to_string();
    let dashboard_at = mounted
        .iter()
        .find(|(h, _)| h == "./deploy/grafana/drc.json")
        .map(|(_, c)| c.clone())
        .expect("grafana mounts the dashboard");
    assert_eq!(
        Path::new(&dashboard_at).parent(),
        Some(Path::new(&path)),
        "the dashboard is in the provider's folder"
    );
    let sources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = sources["datasources"][0]["uid"].as_str().expect("uid");
    assert_eq!(sources["datasources"][0]["url"], "http://prometheus:9090");
    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/drc.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 7);
    for p in panels {
        assert_eq!(p["datasource"]["uid"], uid, "panel {}", p["title"]);
        assert!(!p["targets"].as_array().expect("targets").is_empty());
    }
    for dir in ["datasources", "dashboards"] {
        assert!(
            mounted
                .iter()
                .any(|(_, c)| c.starts_with(&format!("/etc/grafana/provisioning/{dir}/"))),
            "grafana mounts its {dir} provisioning"
        );
    }
}

#[test]
fn the_systemd_unit_is_a_hardened_notify_service_per_center() {
    let unit = read("deploy/systemd/drc@.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(get("Type"), ["notify"]);
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].starts_with("/usr/local/bin/drc run --config /etc/drc/drc.toml --center %i"),
        "{exec:?}"
    );
    for (key, value) in [
        ("Restart", "on-failure"),
        ("User", "drc"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "drc"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    assert!(!get("RestartSec").is_empty());
}
