"""Finding interesting anomalies (paper sec. 3): the simulated user, the experiments, the
CNN + GP method, the Astronomaly baseline, metrics, tables and figures."""
