"""Jobs (trainings and dataset imports): their records, the process that runs one, and how it is started."""
