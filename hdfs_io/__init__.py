"""HDFS access for TensorFlow jobs: paths, a small filesystem facade over hdfs-native, tf.data readers,
checkpoints and atomic SavedModel export. Knows nothing of YARN or Spark."""
