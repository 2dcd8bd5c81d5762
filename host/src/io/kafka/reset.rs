//! Deleting an application's changelog topics (`weir state reset
//! --changelogs`), so its next run starts those stores empty. Only while no
//! process of the application runs: a running one would recreate the
//! topics and keep its local state, so the reset is refused while the
//! application's consumer group has members (Kafka Streams' reset tool asks
//! the same). The input offsets the group committed are kept: processing
//! goes on from them, with empty state. What the control topic records the
//! reset stores hold goes too (a tombstone each), so the next run may
//! store something else under the same ids.

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::control::{ControlTopic, store_format_key};
use super::{REQUEST_TIMEOUT, Role, client_config};
use crate::pipeline::KafkaSettings;

/// What became of one changelog topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// It did not exist (the step never ran on this cluster).
    Absent,
}

/// Deletes the changelog topics of `stores` (store id, topic) once the
/// application's group is found empty, and their format records in the
/// control topic; an error says why not (members still there, the broker
/// refusing).
pub fn delete_changelogs(
    settings: &KafkaSettings,
    bootstrap: &str,
    stores: &[(String, String)],
) -> Result<Vec<(String, Deleted)>, String> {
    let group = &settings.application_id;
    let config: ClientConfig = client_config(settings, bootstrap, Role::Admin);
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a Kafka client for {bootstrap}: {e}"))?;
    let groups = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .map_err(|e| format!("cannot describe consumer group `{group}` on {bootstrap}: {e}"))?;
    for g in groups.groups().iter().filter(|g| g.name() == group) {
        if !g.members().is_empty() {
            let mut hosts: Vec<&str> = g.members().iter().map(|m| m.client_host()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            return Err(format!(
                "the application's consumer group `{group}` has {} member(s) (on {}): stop every process of the application first, then reset",
                g.members().len(),
                hosts.join(", ")
            ));
        }
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client for {bootstrap}: {e}"))?;
    let names: Vec<&str> = stores.iter().map(|(_, topic)| topic.as_str()).collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the admin client's runtime: {e}"))?;
    let results = runtime
        .block_on(admin.delete_topics(&names, &options))
        .map_err(|e| format!("cannot delete topics on {bootstrap}: {e}"))?;
    let mut out = Vec::new();
    for result in results {
        match result {
            Ok(topic) => out.push((topic, Deleted::Deleted)),
            Err((topic, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                out.push((topic, Deleted::Absent))
            }
            Err((topic, code)) => return Err(format!("cannot delete topic `{topic}`: {code}")),
        }
    }
    let control = ControlTopic::open(settings, bootstrap).map_err(|e| e.to_string())?;
    for (store, _) in stores {
        control.write(&store_format_key(store), None).map_err(|e| {
            format!("cannot remove what store `{store}` holds from the control topic: {e}")
        })?;
    }
    Ok(out)
}
