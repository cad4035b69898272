"""Job runners: training runs in worker processes, never in the process that accepted the job."""
