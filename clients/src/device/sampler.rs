//! Readings of this machine: CPU, load, memory, swap, disk, network, uptime, temperature.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::options::DeviceError;

/// Samples the machine.
pub(super) struct Sampler {
    system: sysinfo::System,
    disks: sysinfo::Disks,
    networks: sysinfo::Networks,
    components: sysinfo::Components,
}

impl Sampler {
    pub(super) fn new() -> Result<Sampler, DeviceError> {
        let error = |what: &str, error: sysinfo::Error| {
            DeviceError::Failed(format!("cannot read the {what}: {error}"))
        };
        Ok(Sampler {
            system: sysinfo::System::new().map_err(|e| error("system", e))?,
            disks: sysinfo::Disks::new_with_refreshed_list().map_err(|e| error("disks", e))?,
            networks: sysinfo::Networks::new_with_refreshed_list()
                .map_err(|e| error("network interfaces", e))?,
            components: sysinfo::Components::new_with_refreshed_list()
                .map_err(|e| error("sensors", e))?,
        })
    }

    pub(super) fn reading(&mut self, device_id: &str) -> Value {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        self.components.refresh(true);
        let load = sysinfo::System::load_average().ok();
        let (received, transmitted) = (&self.networks)
            .into_iter()
            .fold((0u64, 0u64), |(rx, tx), (_, data)| {
                (rx + data.total_received(), tx + data.total_transmitted())
            });
        let temperature = (&self.components)
            .into_iter()
            .filter_map(|component| component.temperature())
            .fold(None, |max: Option<f32>, value| {
                Some(max.map_or(value, |m| m.max(value)))
            });
        let mut reading = json!({
            "device_id": device_id,
            "timestamp": SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as u64)
                .unwrap_or(0),
            "cpu_percent": self.system.global_cpu_usage(),
            "load": load.map(|load| json!({"one": load.one, "five": load.five, "fifteen": load.fifteen})),
            "memory": {"total": self.system.total_memory(), "used": self.system.used_memory()},
            "swap": {"total": self.system.total_swap(), "used": self.system.used_swap()},
            "disk": {
                "total": (&self.disks).into_iter().map(|disk| disk.total_space()).sum::<u64>(),
                "available": (&self.disks).into_iter().map(|disk| disk.available_space()).sum::<u64>(),
            },
            "network": {"received_bytes": received, "transmitted_bytes": transmitted},
            "uptime_secs": sysinfo::System::uptime().ok(),
        });
        if let Some(temperature) = temperature {
            reading["temperature_c"] = json!(temperature);
        }
        reading
    }
}
