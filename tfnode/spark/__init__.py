"""Spark mode, as TensorFlowOnSpark has it: TF processes on Spark executors, fed from RDDs and DataFrames.

cluster.py is `TFCluster` (run / train / inference / shutdown); reservation.py the driver's rendezvous and control
connection with the nodes; node.py the TF process of one executor; feed.py and wire.py the data feed (batches of
numpy columns over authenticated frames); pipeline.py and dfutil.py TFoS's Spark ML stages and DataFrame ↔ TFRecord
helpers; parallel.py TFParallel. Users import them as TFoS's names from `tfnode` (see tfnode/__init__.py).
"""
