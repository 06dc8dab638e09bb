#pragma once

#include <stdexcept>
#include <string>

namespace fvc {

/// Base of every exception fvc throws on purpose. Messages read
/// `<where>: <what> has <found>, expected <expected>`, where `<where>` is a
/// `file:line` for text input and a file plus dataset path for HDF5.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Malformed or missing training data: CSV rows, splits, image tensors.
class DataError : public Error {
 public:
  using Error::Error;
};

/// Model files that cannot be read or written: architecture JSON, HDF5 weights.
class WeightsError : public Error {
 public:
  using Error::Error;
};

/// Settings that contradict each other or the hardware (device, batch size).
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// The device (a GPU, or the CPU's memory) could not hold a batch. The message names the
/// device, what was being done, the batch size in use and a smaller one to try.
class OutOfMemoryError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

/// Training that cannot go on: a loss that is NaN or infinite. The message names the epoch,
/// the batch (its first image's place in the epoch) and the learning rate.
class TrainingError : public Error {
 public:
  using Error::Error;
};

}  // namespace fvc
