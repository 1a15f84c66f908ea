//! The scope catalog of the cloud IAM keyctl mirrors: the documented list of
//! scopes, the `yc.ai.foundationModels.execute` umbrella, `….manage` ⇒
//! `….read`, and the documented default set. Built with the library's
//! [`ScopeCatalog::builder`]; `keyctl list-scopes` prints it, and every key
//! keyctl creates, imports or checks is resolved against it.

use api_keys::ScopeCatalog;

/// keyctl's scope catalog.
///
/// # Panics
/// Never: the built-in names are fixed and valid (checked by a test).
pub(crate) fn yandex_cloud() -> ScopeCatalog {
    // The six `yc.ai.*` services lead the defaults.
    let (ai, _) = YC_DEFAULTS.split_at(6);
    let mut b = ScopeCatalog::builder();
    for (name, desc) in YC_SCOPES {
        b = b.scope(name, desc);
    }
    b.implies("yc.ai.foundationModels.execute", ai.iter().copied())
        .defaults(YC_DEFAULTS)
        .build()
        .expect("the built-in names are fixed and valid")
}

const YC_DEFAULTS: [&str; 10] = [
    "yc.ai.imageGeneration.execute",
    "yc.ai.languageModels.execute",
    "yc.ai.speechkitStt.execute",
    "yc.ai.speechkitTts.execute",
    "yc.ai.translate.execute",
    "yc.ai.vision.execute",
    "yc.monitoring.manage",
    "yc.search-api.execute",
    "yc.serverless.containers.invoke",
    "yc.serverless.functions.invoke",
];

const YC_SCOPES: [(&str, &str); 20] = [
    (
        "yc.ai.foundationModels.execute",
        "Requests to the Assistant, Image Generation, Text Generation, SpeechKit, Translate and Vision APIs",
    ),
    ("yc.ai.imageGeneration.execute", "Requests to image generation models via the Image Generation API"),
    ("yc.ai.languageModels.execute", "Requests to text generation models via the Text Generation API"),
    ("yc.ai.speechkitStt.execute", "Speech recognition via the SpeechKit API"),
    ("yc.ai.speechkitTts.execute", "Speech synthesis via the SpeechKit API"),
    ("yc.ai.translate.execute", "Text translation via the Translate API"),
    ("yc.ai.vision.execute", "Optical text recognition via the Vision API"),
    ("yc.logging.write", "Writing log entries"),
    ("yc.monitoring.manage", "Viewing and writing data via the Monitoring API"),
    ("yc.monitoring.read", "Viewing data via the Monitoring API"),
    ("yc.monium.logs.write", "Writing logs to Monium"),
    ("yc.monium.metrics.write", "Writing metrics to Monium"),
    ("yc.monium.telemetry.write", "Writing telemetry to Monium"),
    ("yc.monium.traces.write", "Writing traces to Monium"),
    ("yc.postbox.send", "Sending emails via the Postbox API"),
    ("yc.search-api.execute", "Search queries via the Search API"),
    ("yc.serverless.containers.invoke", "Invoking containers via the Serverless Containers API"),
    ("yc.serverless.functions.invoke", "Invoking functions via the Cloud Functions API"),
    ("yc.ydb.tables.manage", "Accessing YDB in PostgreSQL-compatible mode"),
    ("yc.ydb.topics.manage", "Accessing the Kafka API in Data Streams"),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::yandex_cloud;

    #[test]
    fn the_catalog_matches_the_seeds() {
        let c = yandex_cloud();
        assert_eq!(c.list().len(), 20);
        assert_eq!(c.defaults().len(), 10);
        assert!(c.contains("yc.monium.telemetry.write"));
        let tr = c.requirement("yc.ai.translate.execute").unwrap();
        let umbrella = c.resolve(Some(&["yc.ai.foundationModels.execute"])).unwrap();
        assert!(tr.is_satisfied_by(&umbrella));
        let read = c.requirement("yc.monitoring.read").unwrap();
        assert!(read.is_satisfied_by(&c.resolve(Some(&["yc.monitoring.manage"])).unwrap()));
        assert!(read.is_satisfied_by(&c.resolve(Some(&["yc.monitoring.read"])).unwrap()));
        let manage = c.requirement("yc.monitoring.manage").unwrap();
        assert!(!manage.is_satisfied_by(&c.resolve(Some(&["yc.monitoring.read"])).unwrap()));
        // Defaults carry monitoring.manage, hence monitoring.read...
        assert!(read.is_satisfied_by(c.defaults()));
        // ...but not postbox.send.
        let post = c.requirement("yc.postbox.send").unwrap();
        assert!(!post.is_satisfied_by(c.defaults()));
    }
}
