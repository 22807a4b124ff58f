//! The tunnels connected to this edge, by name. Live connections only: which box owns a name
//! is in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_tunnel::edge::Tunnel;

#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Arc<Tunnel>>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Tunnel>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest tunnel of a box wins (it dialled again from a new address); the older one
    /// is closed. Removed again when it ends.
    pub fn insert(&self, tunnel: Arc<Tunnel>) {
        if let Some(old) = self.map().insert(tunnel.name.clone(), tunnel.clone()) {
            old.close();
        }
        let me = self.clone();
        tokio::spawn(async move {
            tunnel.closed().await;
            let mut map = me.map();
            if map
                .get(&tunnel.name)
                .is_some_and(|t| Arc::ptr_eq(t, &tunnel))
            {
                map.remove(&tunnel.name);
            }
        });
    }

    pub fn get(&self, name: &str) -> Option<Arc<Tunnel>> {
        self.map().get(name).filter(|t| !t.is_closed()).cloned()
    }

    /// Closes every tunnel (the edge stops; the boxes will dial again).
    pub fn close_all(&self) {
        for t in self.map().drain().map(|(_, t)| t) {
            t.close();
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
