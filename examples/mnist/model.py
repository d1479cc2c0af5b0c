"""The example model: TensorFlow's tutorial-style 2-conv + pooling CNN (Fashion-MNIST's published table lists
it at 0.916), sized so an epoch of 60k images takes well under a minute on two CPU cores."""

from __future__ import annotations

import keras


def build_cnn(learning_rate: float = 1e-3) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(784,), name="image"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
