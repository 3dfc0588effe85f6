//! The table of public model names and the deployments behind each.
//!
//! Built once from the config. Picking a deployment is a weighted random choice; the
//! resilience work (breakers, least latency, fallbacks) replaces [`ModelRoute::pick`] without
//! touching the handlers.

use crate::metrics::CallMetrics;
use agentd_config::Config;
use agentd_providers::{Provider, ProviderError};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Deployment {
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    /// Metric handles labelled with this deployment's provider and the public model name.
    pub metrics: Arc<CallMetrics>,
}

pub struct ModelRoute {
    pub name: String,
    pub owned_by: String,
    pub deployments: Vec<Deployment>,
    total_weight: u32,
}

impl ModelRoute {
    pub fn pick(&self) -> &Deployment {
        if self.deployments.len() == 1 {
            return &self.deployments[0];
        }
        let mut ticket = rand::thread_rng().gen_range(0..self.total_weight);
        for d in &self.deployments {
            if ticket < d.weight {
                return d;
            }
            ticket -= d.weight;
        }
        &self.deployments[self.deployments.len() - 1]
    }
}

pub struct Models {
    by_name: HashMap<String, Arc<ModelRoute>>,
    /// Config order, for `/v1/models`.
    pub ordered: Vec<Arc<ModelRoute>>,
    /// Unix time the table was built, reported as `created`.
    pub created: i64,
}

impl Models {
    pub fn from_config(config: &Config) -> Result<Models, ProviderError> {
        let mut providers: HashMap<&str, Arc<Provider>> = HashMap::new();
        for p in &config.providers {
            providers.insert(p.name.as_str(), Arc::new(Provider::from_config(p)?));
        }
        let mut by_name = HashMap::new();
        let mut ordered = Vec::new();
        for m in &config.models {
            let deployments: Vec<Deployment> = m
                .deployments
                .iter()
                .map(|d| {
                    let provider =
                        providers.get(d.provider.as_str()).cloned().ok_or_else(|| {
                            // Config validation guarantees this; keep a clear error if it ever doesn't.
                            ProviderError::Config(format!(
                                "model {:?} names unknown provider {:?}",
                                m.name, d.provider
                            ))
                        })?;
                    Ok(Deployment {
                        metrics: Arc::new(CallMetrics::new(provider.name(), &m.name)),
                        provider,
                        model: d.model.clone(),
                        weight: d.weight.max(1),
                    })
                })
                .collect::<Result<_, ProviderError>>()?;
            let route = Arc::new(ModelRoute {
                name: m.name.clone(),
                owned_by: m.owned_by.clone(),
                total_weight: deployments.iter().map(|d| d.weight).sum(),
                deployments,
            });
            by_name.insert(m.name.clone(), route.clone());
            ordered.push(route);
        }
        Ok(Models {
            by_name,
            ordered,
            created: chrono::Utc::now().timestamp(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.by_name.get(name)
    }
}
