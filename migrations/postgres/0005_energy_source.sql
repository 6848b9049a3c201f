-- What measured a request's energy_joules: 'rapl', 'nvml', or 'estimate' (power.cpu_watts_estimate), so estimated
-- joules are never summed with measured ones.
ALTER TABLE requests ADD COLUMN energy_source TEXT;
