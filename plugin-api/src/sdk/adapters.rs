//! Adapters from the SDK traits (plain Rust) to the ABI trait objects.
//!
//! Each ABI method clones an `Arc` of the component, converts the arguments to Rust types and
//! hands the future to [`guard`], so that every call is panic-safe and runs in the plugin's
//! runtime.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RString, RVec};
use tokio::runtime::Handle;

use super::guard::guard;
use super::traits::*;
use crate::abi::*;
use crate::PluginError;

fn strings(v: RVec<RString>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

fn json_of(text: RString) -> Result<serde_json::Value, PluginError> {
    serde_json::from_str(text.as_str())
        .map_err(|e| PluginError::invalid_input(format!("request is not valid JSON: {e}")))
}

macro_rules! common_methods {
    () => {
        fn health(&self) -> PReply<RString> {
            let this = self.inner.clone();
            guard(self.rt.clone(), move || async move {
                Ok(RString::from(this.health().await?.to_string()))
            })
        }
        fn close(&self) -> PReply<()> {
            let this = self.inner.clone();
            guard(self.rt.clone(), move || async move { this.close().await })
        }
        fn call(&self, op: RString, payload: RString) -> PReply<RString> {
            let this = self.inner.clone();
            guard(self.rt.clone(), move || async move {
                this.call(op.into(), payload.into())
                    .await
                    .map(RString::from)
            })
        }
    };
}

struct Adapter<T> {
    inner: Arc<T>,
    rt: Option<Handle>,
}

impl<T: TrackerStorePlugin> TrackerStore for Adapter<T> {
    fn load(&self, conversation_id: RString, from: u64) -> PReply<ROption<EventLog>> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            Ok(this.load(conversation_id.into(), from).await?.into())
        })
    }
    fn append(&self, conversation_id: RString, events: RVec<RString>) -> PReply<LogPosition> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.append(conversation_id.into(), strings(events)).await
        })
    }
    fn replace(&self, conversation_id: RString, events: RVec<RString>) -> PReply<LogPosition> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.replace(conversation_id.into(), strings(events)).await
        })
    }
    fn keys(&self) -> PReply<RVec<RString>> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            Ok(this.keys().await?.into_iter().map(RString::from).collect())
        })
    }
    fn delete(&self, conversation_id: RString) -> PReply<bool> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.delete(conversation_id.into()).await
        })
    }
    common_methods!();
}

impl<T: LockStorePlugin> LockStore for Adapter<T> {
    fn acquire(&self, conversation_id: RString, lifetime_ms: u64, wait_ms: u64) -> PReply<RString> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.acquire(conversation_id.into(), lifetime_ms, wait_ms)
                .await
                .map(RString::from)
        })
    }
    fn release(&self, conversation_id: RString, ticket: RString) -> PReply<()> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.release(conversation_id.into(), ticket.into()).await
        })
    }
    common_methods!();
}

impl<T: EventBrokerPlugin> EventBroker for Adapter<T> {
    fn publish(&self, conversation_id: RString, events: RVec<RString>) -> PReply<()> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            // Lent, not copied: the host's strings live until the call is answered.
            let lent: Vec<&str> = events.iter().map(RString::as_str).collect();
            this.publish_borrowed(conversation_id.as_str(), &lent).await
        })
    }
    fn flush(&self, timeout_ms: u64) -> PReply<()> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            this.flush(timeout_ms).await
        })
    }
    common_methods!();
}

impl<T: NluConnectorPlugin> NluConnector for Adapter<T> {
    fn parse(&self, request_json: RString) -> PReply<RString> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            let request = json_of(request_json)?;
            Ok(RString::from(this.parse(request).await?.to_string()))
        })
    }
    common_methods!();
}

impl<T: ModelSourcePlugin> ModelSource for Adapter<T> {
    fn fetch(&self, request_json: RString) -> PReply<RString> {
        let this = self.inner.clone();
        guard(self.rt.clone(), move || async move {
            let request = json_of(request_json)?;
            Ok(RString::from(this.fetch(request).await?.to_string()))
        })
    }
    common_methods!();
}

/// Boxes a tracker store as the ABI trait object. `rt`: the runtime its futures need entered
/// (`None` for components compiled into the host, which share the host's tokio).
pub fn tracker_store_box<T: TrackerStorePlugin>(store: T, rt: Option<Handle>) -> TrackerStoreBox {
    TrackerStore_TO::from_value(
        Adapter {
            inner: Arc::new(store),
            rt,
        },
        TD_Opaque,
    )
}

pub fn lock_store_box<T: LockStorePlugin>(store: T, rt: Option<Handle>) -> LockStoreBox {
    LockStore_TO::from_value(
        Adapter {
            inner: Arc::new(store),
            rt,
        },
        TD_Opaque,
    )
}

pub fn event_broker_box<T: EventBrokerPlugin>(broker: T, rt: Option<Handle>) -> EventBrokerBox {
    EventBroker_TO::from_value(
        Adapter {
            inner: Arc::new(broker),
            rt,
        },
        TD_Opaque,
    )
}

pub fn nlu_connector_box<T: NluConnectorPlugin>(nlu: T, rt: Option<Handle>) -> NluConnectorBox {
    NluConnector_TO::from_value(
        Adapter {
            inner: Arc::new(nlu),
            rt,
        },
        TD_Opaque,
    )
}

pub fn model_source_box<T: ModelSourcePlugin>(source: T, rt: Option<Handle>) -> ModelSourceBox {
    ModelSource_TO::from_value(
        Adapter {
            inner: Arc::new(source),
            rt,
        },
        TD_Opaque,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use abi_stable::std_types::RResult;

    use super::*;

    /// Records what reached which method.
    #[derive(Default)]
    struct Recorder {
        owned: Mutex<Vec<(String, Vec<String>)>>,
        lent: Mutex<Vec<(String, Vec<String>)>>,
    }

    /// Implements `publish` only, as most brokers do.
    struct OwnedOnly(Arc<Recorder>);

    impl EventBrokerPlugin for OwnedOnly {
        async fn publish(&self, id: String, events: Vec<String>) -> Result<(), PluginError> {
            self.0.owned.lock().unwrap().push((id, events));
            Ok(())
        }
    }

    /// Takes the events lent, like the Kafka plugin.
    struct Lending(Arc<Recorder>);

    impl EventBrokerPlugin for Lending {
        async fn publish(&self, _: String, _: Vec<String>) -> Result<(), PluginError> {
            Err(PluginError::unsupported("publish"))
        }
        async fn publish_borrowed<'a>(
            &'a self,
            id: &'a str,
            events: &'a [&'a str],
        ) -> Result<(), PluginError> {
            let events = events.iter().map(|e| e.to_string()).collect();
            self.0.lent.lock().unwrap().push((id.to_string(), events));
            Ok(())
        }
    }

    fn publish_through_the_abi(broker: &EventBrokerBox) {
        let events: RVec<RString> = [r#"{"event":"restart"}"#, r#"{"event":"pause"}"#]
            .into_iter()
            .map(RString::from)
            .collect();
        match broker.publish("alice".into(), events) {
            PReply::Ready(RResult::ROk(())) => {}
            other => panic!("publish answered {other:?}"),
        }
    }

    #[test]
    fn the_host_reaches_either_publish_with_the_same_events() {
        let want = vec![(
            "alice".to_string(),
            vec![
                r#"{"event":"restart"}"#.to_string(),
                r#"{"event":"pause"}"#.to_string(),
            ],
        )];
        let owned = Arc::new(Recorder::default());
        publish_through_the_abi(&event_broker_box(OwnedOnly(owned.clone()), None));
        assert_eq!(*owned.owned.lock().unwrap(), want);

        let lent = Arc::new(Recorder::default());
        publish_through_the_abi(&event_broker_box(Lending(lent.clone()), None));
        assert_eq!(*lent.lent.lock().unwrap(), want);
        assert!(lent.owned.lock().unwrap().is_empty());
    }
}
