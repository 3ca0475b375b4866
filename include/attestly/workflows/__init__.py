"""Task bodies of the DAGs (the DAG files only wire them). Imports Airflow lazily."""
