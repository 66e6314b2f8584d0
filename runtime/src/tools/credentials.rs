//! Per-tenant credentials, resolved by the runtime for each call and never visible to the model.

use std::collections::BTreeMap;

/// Secrets by tenant and tool: `tenant → tool → (environment name → value)`.
///
/// A call gets only the entries of its own tenant for its own tool; there is no fallback to
/// another tenant's or to a shared entry, so a misconfiguration yields no credential rather
/// than someone else's.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_tenant: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

impl Credentials {
    /// Grants `tool`, when called for `tenant`, the variable `name` = `value`.
    pub fn grant(&mut self, tenant: &str, tool: &str, name: &str, value: &str) -> &mut Self {
        self.by_tenant
            .entry(tenant.to_owned())
            .or_default()
            .entry(tool.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// What a call of `tool` for `tenant` receives.
    pub fn for_call(&self, tenant: &str, tool: &str) -> BTreeMap<String, String> {
        self.by_tenant
            .get(tenant)
            .and_then(|t| t.get(tool))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_own_credentials_only() {
        let mut c = Credentials::default();
        c.grant("acme", "crm", "CRM_TOKEN", "acme-secret").grant(
            "globex",
            "crm",
            "CRM_TOKEN",
            "globex-secret",
        );
        assert_eq!(
            c.for_call("acme", "crm")
                .get("CRM_TOKEN")
                .map(String::as_str),
            Some("acme-secret")
        );
        assert_eq!(
            c.for_call("globex", "crm")
                .get("CRM_TOKEN")
                .map(String::as_str),
            Some("globex-secret")
        );
        assert!(c.for_call("initech", "crm").is_empty());
        assert!(c.for_call("acme", "mailer").is_empty());
    }
}
