//! Golden files of the request translations: each
//! `tests/golden/<provider>/<case>.json` holds an OpenAI chat request
//! (`openai`) and what the gateway sends the provider for it (the provider's
//! name as key). Run with `UPDATE_GOLDEN=1` to (re)write the expected side
//! after a deliberate change, then review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::{Map, Value};

type Translate = fn(&Map<String, Value>) -> Value;

fn check(provider: &str, translate: Translate) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(provider);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        cases += 1;
        let mut file: Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let input = file["openai"].as_object().unwrap().clone();
        let got = translate(&input);
        if update || !file.contains_key(provider) {
            file.insert(provider.to_string(), got);
            let text = serde_json::to_string_pretty(&Value::Object(file)).unwrap();
            std::fs::write(&path, text + "\n").unwrap();
            continue;
        }
        assert_eq!(
            got,
            file[provider],
            "{}: translation differs from the golden file (UPDATE_GOLDEN=1 to accept)",
            path.display()
        );
    }
    assert!(cases > 0, "no golden files in {}", dir.display());
}

#[test]
fn anthropic_request_translations() {
    check("anthropic", |body| {
        tollgate_dp::providers::anthropic::request::to_anthropic(body)
            .unwrap()
            .0
    });
}

#[test]
fn gemini_request_translations() {
    check("gemini", |body| {
        tollgate_dp::providers::gemini::request::to_gemini(body).unwrap()
    });
}
