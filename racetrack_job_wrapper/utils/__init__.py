"""Value types a job may import and return, at the import path racetrack-job-runner gives them."""
