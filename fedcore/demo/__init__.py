"""The local demo: a coordinator and client processes training an MLP on scikit-learn's digits."""
