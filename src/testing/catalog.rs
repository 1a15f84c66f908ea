//! A ready-made scope catalog for tests, benches and examples.

use crate::ScopeCatalog;

/// A scope catalog to test with: the twenty `yc.*` scopes of a cloud IAM
/// (`yc.monitoring.read`, `yc.postbox.send`, `yc.ai.translate.execute`, …),
/// the `yc.ai.foundationModels.execute` umbrella over the six `yc.ai.*`
/// services, `….manage` ⇒ `….read`, and ten defaults (the six `yc.ai.*`
/// services, `yc.monitoring.manage`, `yc.search-api.execute` and the two
/// `yc.serverless.*` scopes). Built with the public [`ScopeCatalog::builder`],
/// as an application builds its own:
///
/// ```
/// use api_keys::testing::scope_catalog;
///
/// let catalog = scope_catalog();
/// assert_eq!(catalog.list().len(), 20);
/// let read = catalog.requirement("yc.monitoring.read").unwrap();
/// assert!(read.is_satisfied_by(catalog.defaults())); // via yc.monitoring.manage
/// ```
///
/// # Panics
/// Never: the names are fixed and valid (checked by a test).
#[must_use]
pub fn scope_catalog() -> ScopeCatalog {
    let (ai, _) = YC_DEFAULTS.split_at(6);
    let mut b = ScopeCatalog::builder();
    for (name, desc) in YC_SCOPES {
        b = b.scope(name, desc);
    }
    b.implies("yc.ai.foundationModels.execute", ai.iter().copied())
        .defaults(YC_DEFAULTS)
        .build()
        .expect("the names are fixed and valid")
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
    use super::scope_catalog;

    #[test]
    fn the_catalog_builds_with_its_implications() {
        let c = scope_catalog();
        assert_eq!((c.list().len(), c.defaults().len()), (20, 10));
        let translate = c.requirement("yc.ai.translate.execute").unwrap();
        assert!(translate.is_satisfied_by(&c.resolve(Some(&["yc.ai.foundationModels.execute"])).unwrap()));
        let post = c.requirement("yc.postbox.send").unwrap();
        assert!(!post.is_satisfied_by(c.defaults()));
    }
}
