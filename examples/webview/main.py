from job import Job

from racetrack_job_wrapper.standalone import serve_job_class


def main():
    serve_job_class(Job)


if __name__ == '__main__':
    main()
