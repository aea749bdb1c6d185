//! Backup policies (`instance_backup_policy`): their shape, validation
//! (DCS.4072–DCS.4076) and how a stored policy is shown.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::iso;
use crate::api::error::{ApiError, Dcs};
use crate::model::{BackupPolicy, StoredPolicy};

/// `periodical_backup_plan`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct BackupPlanJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone_offset: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub backup_at: Value,
    #[serde(default)]
    #[schema(value_type = String)]
    pub period_type: Value,
    #[serde(default)]
    #[schema(value_type = String)]
    pub begin_at: Value,
}

/// `instance_backup_policy` as sent (BackupPolicy) and shown (BackupPolicyResp).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct BackupPolicyJson {
    #[serde(default)]
    #[schema(value_type = String)]
    pub backup_type: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<i64>)]
    pub save_days: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodical_backup_plan: Option<BackupPlanJson>,
}

/// Parses a time zone offset in the forms the reference shows: `GMT+08:00`,
/// `UTC-5`, `+0530`, `+08:00`, within −12:00..+12:00. Returns minutes east.
pub fn parse_tz_offset(s: &str) -> Option<i32> {
    let t = s.trim();
    let t = t
        .strip_prefix("GMT")
        .or_else(|| t.strip_prefix("gmt"))
        .or_else(|| t.strip_prefix("UTC"))
        .or_else(|| t.strip_prefix("utc"))
        .unwrap_or(t)
        .trim();
    if t.is_empty() || t == "Z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let rest = rest.trim();
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    let h: i32 = h
        .parse()
        .ok()
        .filter(|_| h.bytes().all(|b| b.is_ascii_digit()))?;
    let m: i32 = m
        .parse()
        .ok()
        .filter(|_| m.bytes().all(|b| b.is_ascii_digit()))?;
    if m >= 60 {
        return None;
    }
    let minutes = h * 60 + m;
    (minutes <= 12 * 60).then_some(sign * minutes)
}

/// Validates `instance_backup_policy` (DCS.4072–DCS.4076).
pub fn validate_policy(p: &BackupPolicyJson) -> Result<BackupPolicy, ApiError> {
    let backup_type = match p.backup_type.as_str() {
        Some(t @ ("auto" | "manual")) => t.to_owned(),
        _ => return Err(ApiError::new(Dcs::BadBackupType)),
    };
    let save_days = match &p.save_days {
        Value::Null => None,
        v => match v.as_i64() {
            Some(d) if (1..=7).contains(&d) => Some(d),
            _ => return Err(ApiError::new(Dcs::BadSaveDays)),
        },
    };
    if backup_type == "manual" {
        return Ok(BackupPolicy {
            backup_type,
            save_days,
            period_type: None,
            backup_at: vec![],
            begin_hour: None,
            tz_offset_minutes: 0,
            timezone_offset: None,
        });
    }
    if save_days.is_none() {
        return Err(ApiError::new(Dcs::BadSaveDays));
    }
    let plan = p
        .periodical_backup_plan
        .clone()
        .ok_or_else(|| ApiError::new(Dcs::BadPeriodType))?;
    if plan.period_type.as_str() != Some("weekly") {
        return Err(ApiError::new(Dcs::BadPeriodType));
    }
    let days = plan
        .backup_at
        .as_array()
        .ok_or_else(|| ApiError::new(Dcs::BadBackupAt))?;
    let mut backup_at = Vec::with_capacity(days.len());
    for d in days {
        match d.as_i64() {
            Some(d @ 1..=7) if !backup_at.contains(&(d as u8)) => backup_at.push(d as u8),
            _ => return Err(ApiError::new(Dcs::BadBackupAt)),
        }
    }
    if backup_at.is_empty() {
        return Err(ApiError::new(Dcs::BadBackupAt));
    }
    let begin_hour = plan
        .begin_at
        .as_str()
        .and_then(parse_begin_at)
        .ok_or_else(|| ApiError::new(Dcs::BadBeginAt))?;
    let tz_offset_minutes = match &plan.timezone_offset {
        None => 0,
        Some(s) if s.trim().is_empty() => 0,
        Some(s) => parse_tz_offset(s).ok_or_else(|| ApiError::invalid("timezone_offset"))?,
    };
    Ok(BackupPolicy {
        backup_type,
        save_days,
        period_type: Some("weekly".into()),
        backup_at,
        begin_hour: Some(begin_hour),
        tz_offset_minutes,
        timezone_offset: plan.timezone_offset.clone(),
    })
}

/// `HH:00-HH+1:00` on the hour; returns HH.
fn parse_begin_at(s: &str) -> Option<u8> {
    let (a, b) = s.split_once('-')?;
    let hour = |x: &str| -> Option<u8> {
        let (h, m) = x.split_once(':')?;
        (h.len() == 2 && m == "00" && h.bytes().all(|c| c.is_ascii_digit()))
            .then(|| h.parse().ok())?
    };
    let (start, end) = (hour(a)?, hour(b)?);
    (start < 24 && end < 24 && end == (start + 1) % 24).then_some(start)
}

impl From<&BackupPolicy> for BackupPolicyJson {
    fn from(p: &BackupPolicy) -> Self {
        let plan = p.begin_hour.map(|h| BackupPlanJson {
            timezone_offset: p.timezone_offset.clone(),
            backup_at: Value::from(
                p.backup_at
                    .iter()
                    .map(|d| i64::from(*d))
                    .collect::<Vec<_>>(),
            ),
            period_type: Value::from(p.period_type.clone().unwrap_or_else(|| "weekly".into())),
            begin_at: Value::from(crate::model::window_label(h)),
        });
        Self {
            backup_type: Value::from(p.backup_type.clone()),
            save_days: p.save_days.map(Value::from).unwrap_or(Value::Null),
            periodical_backup_plan: plan,
        }
    }
}

/// `InstanceBackupPolicy` as shown by `GET /instances/{id}`.
#[derive(Serialize, ToSchema)]
pub struct InstanceBackupPolicyJson {
    pub backup_policy_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub policy: BackupPolicyJson,
    pub tenant_id: String,
}

impl InstanceBackupPolicyJson {
    pub fn new(p: &StoredPolicy, tenant: &str) -> Self {
        Self {
            backup_policy_id: p.id.clone(),
            created_at: iso(p.created_at),
            updated_at: iso(p.updated_at),
            policy: BackupPolicyJson::from(&p.policy),
            tenant_id: tenant.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timezone_forms() {
        assert_eq!(parse_tz_offset("GMT+08:00"), Some(480));
        assert_eq!(parse_tz_offset("GMT -12:00"), Some(-720));
        assert_eq!(parse_tz_offset("+0530"), Some(330));
        assert_eq!(parse_tz_offset("UTC-5"), Some(-300));
        assert_eq!(parse_tz_offset("+12:30"), None);
        assert_eq!(parse_tz_offset("08:00"), None);
        assert_eq!(parse_tz_offset("+8:75"), None);
    }

    fn policy(v: serde_json::Value) -> Result<BackupPolicy, &'static str> {
        let p: BackupPolicyJson = serde_json::from_value(v).unwrap();
        validate_policy(&p).map_err(|e| e.code())
    }

    #[test]
    fn policy_validation_codes() {
        let plan = |at: serde_json::Value, begin: &str| {
            json!({"backup_type": "auto", "save_days": 3,
                   "periodical_backup_plan": {"period_type": "weekly", "backup_at": at, "begin_at": begin}})
        };
        assert!(policy(plan(json!([1, 7]), "23:00-00:00")).is_ok());
        assert_eq!(policy(json!({"backup_type": "daily"})), Err("DCS.4073"));
        assert_eq!(policy(json!({"backup_type": "auto"})), Err("DCS.4072"));
        assert_eq!(
            policy(json!({"backup_type": "auto", "save_days": 8,
                           "periodical_backup_plan": {"period_type": "weekly", "backup_at": [1], "begin_at": "00:00-01:00"}})),
            Err("DCS.4072")
        );
        assert_eq!(
            policy(json!({"backup_type": "auto", "save_days": 1,
                           "periodical_backup_plan": {"period_type": "daily", "backup_at": [1], "begin_at": "00:00-01:00"}})),
            Err("DCS.4074")
        );
        assert_eq!(policy(plan(json!([]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([0]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([2, 2]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([1]), "00:30-01:30")), Err("DCS.4076"));
        assert_eq!(policy(plan(json!([1]), "00:00-02:00")), Err("DCS.4076"));
        assert_eq!(policy(plan(json!([1]), "24:00-01:00")), Err("DCS.4076"));
        assert!(policy(json!({"backup_type": "manual"})).is_ok());
    }
}
