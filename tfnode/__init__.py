"""What runs beside TensorFlow on each node: context, cluster spec / TF_CONFIG, start-up barrier, Spark mode."""
