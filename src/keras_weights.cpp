#include "keras_weights.h"

#include <H5Cpp.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "file_checks.h"
#include "fvc/error.h"
#include "hdf5_file_image.h"
#include "hdf5_guard.h"
#include "keras_json.h"

namespace fvc::detail {
namespace {

// ~~~ attributes ~~~

constexpr size_t kMaxAttributeBytes = size_t{64} << 20;

void write_string_list(H5::H5Object& object, const char* name,
                       const std::vector<std::string>& values) {
  size_t length = 1;
  for (const auto& value : values) {
    length = std::max(length, value.size());
  }
  std::vector<char> buffer(values.size() * length, '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    std::copy(values[i].begin(), values[i].end(), buffer.begin() + i * length);
  }

  H5::StrType type(H5::PredType::C_S1, length);
  type.setStrpad(H5T_STR_NULLPAD);
  const hsize_t dims[1] = {values.size()};
  H5::Attribute attribute = object.createAttribute(name, type, H5::DataSpace(1, dims));
  if (!values.empty()) {  // HDF5 refuses a null buffer even for zero elements
    attribute.write(type, buffer.data());
  }
}

void write_string(H5::H5Object& object, const char* name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, std::max<size_t>(1, value.size()));
  type.setStrpad(H5T_STR_NULLPAD);
  H5::Attribute attribute = object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  attribute.write(type, value.c_str());
}

// Reads a string attribute, scalar or array, fixed- or variable-length, or raw bytes.
// Keras writes an empty float array where a layer has no weights: that reads as no strings.
std::vector<std::string> read_string_list(const H5::H5Object& object, const char* name,
                                          const std::string& where) {
  H5::Attribute attribute = object.openAttribute(name);
  H5::DataSpace space = attribute.getSpace();
  const auto count = static_cast<size_t>(space.getSimpleExtentNpoints());
  if (count == 0) {
    return {};  // HDF5 refuses to read into the null buffer of an empty list
  }
  // A damaged file can claim gigabytes of strings; Keras's lists take a few kilobytes.
  const double bytes = static_cast<double>(count) * attribute.getDataType().getSize();
  if (bytes > kMaxAttributeBytes) {
    throw WeightsError(fmt::format("{}: attribute '{}' has {:.0f} bytes, expected at most {}: the "
                                   "file may be damaged",
                                   where, name, bytes, kMaxAttributeBytes));
  }
  const auto type_class = attribute.getTypeClass();
  if (type_class == H5T_OPAQUE ||
      (type_class == H5T_INTEGER && attribute.getDataType().getSize() == 1)) {
    // One string stored as raw bytes (numpy uint8 or void) rather than as an HDF5 string.
    std::string bytes(count * attribute.getDataType().getSize(), '\0');
    attribute.read(attribute.getDataType(), bytes.data());
    bytes.erase(std::find(bytes.begin(), bytes.end(), '\0'), bytes.end());
    return {bytes};
  }
  if (type_class != H5T_STRING) {
    throw WeightsError(
        fmt::format("{}: attribute '{}' holds numbers, expected strings", where, name));
  }

  H5::StrType type = attribute.getStrType();
  std::vector<std::string> values;
  if (type.isVariableStr()) {
    std::vector<char*> pointers(count, nullptr);
    attribute.read(type, pointers.data());
    for (char* pointer : pointers) {
      values.emplace_back(pointer ? pointer : "");
    }
    H5Dvlen_reclaim(type.getId(), space.getId(), H5P_DEFAULT, pointers.data());
    return values;
  }

  const size_t length = type.getSize();
  std::vector<char> buffer(count * length);
  attribute.read(type, buffer.data());
  for (size_t i = 0; i < count; ++i) {
    std::string value(buffer.data() + i * length, length);
    value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
    values.push_back(std::move(value));
  }
  return values;
}

// ~~~ datasets ~~~

void write_tensor(H5::Group& group, const std::string& name, const torch::Tensor& tensor) {
  std::vector<hsize_t> dims(tensor.sizes().begin(), tensor.sizes().end());
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  // Keras nests "layer/kernel:0" as a group and a dataset, as h5py does for a path.
  H5::LinkCreatPropList create_parents;
  create_parents.setCreateIntermediateGroup(true);
  H5::DataSet dataset =
      group.createDataSet(name, H5::PredType::IEEE_F32LE, space, H5::DSetCreatPropList::DEFAULT,
                          H5::DSetAccPropList::DEFAULT, create_parents);
  dataset.write(tensor.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
}

std::vector<int64_t> dataset_shape(const H5::DataSet& dataset) {
  H5::DataSpace space = dataset.getSpace();
  std::vector<hsize_t> dims(static_cast<size_t>(space.getSimpleExtentNdims()));
  space.getSimpleExtentDims(dims.data());
  return {dims.begin(), dims.end()};
}

}  // namespace

namespace {

void write_layer_groups(H5::Group& root, const std::vector<std::string>& layer_names,
                        const std::vector<KerasLayerWeights>& weights, int format_version) {
  write_string_list(root, "layer_names", layer_names);
  write_string(root, "backend", "tensorflow");
  write_string(root, "keras_version", kKerasVersion);
  root.createAttribute("fvc_format_version", H5::PredType::STD_I32LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT, &format_version);

  for (const auto& layer_name : layer_names) {
    H5::Group group = root.createGroup(layer_name);
    auto found = std::find_if(weights.begin(), weights.end(),
                              [&](const auto& w) { return w.layer == layer_name; });
    if (found == weights.end()) {
      write_string_list(group, "weight_names", {});
      continue;
    }
    write_string_list(group, "weight_names", found->names);
    for (size_t i = 0; i < found->names.size(); ++i) {
      write_tensor(group, found->names[i], found->tensors[i]);
    }
  }
}

}  // namespace

void write_keras_weights(const std::string& path, const std::vector<std::string>& layer_names,
                         const std::vector<KerasLayerWeights>& weights,
                         const KerasFileSettings& settings) {
  H5::Exception::dontPrint();
  // The file system's refusals (a missing folder, a full disk) are WeightsErrors too.
  try {
    write_hdf5_atomically(path, [&](H5::H5File& file) {
      if (settings.model_config.empty()) {
        write_layer_groups(file, layer_names, weights, settings.format_version);
      } else {
        // model.save(): the architecture on the root, the save_weights layout in a group.
        write_string(file, "model_config", settings.model_config);
        write_string(file, "backend", "tensorflow");
        write_string(file, "keras_version", kKerasVersion);
        H5::Group group = file.createGroup("model_weights");
        write_layer_groups(group, layer_names, weights, settings.format_version);
      }
    });
  } catch (const H5::Exception& error) {
    throw WeightsError(fmt::format("{}: cannot write HDF5 weights: {} ({})", path,
                                   error.getDetailMsg(), error.getFuncName()));
  } catch (const WeightsError&) {
    throw;
  } catch (const Error& error) {
    throw WeightsError(error.what());
  }
}

KerasWeightsFile::KerasWeightsFile(std::string path, int format_version)
    : path_(std::move(path)), format_version_(format_version) {
  const Hdf5Lock lock;
  H5::Exception::dontPrint();
  if (!in_rehearsal()) {
    rehearse();
  }
  try {
    open();
    read_root_attributes();
    read_index();
  } catch (const H5::Exception& error) {
    throw WeightsError(fmt::format("{}: cannot read HDF5 weights: {} ({}); the file is damaged",
                                   path_, error.getDetailMsg(), error.getFuncName()));
  }
}

// Reads the index and every weight in a child process first. A dataset larger than the
// child's memory allowance is left out: its shape alone will not match any network, and
// `ModelIO` refuses it before reading.
void KerasWeightsFile::rehearse() const {
  std::error_code error;
  const auto bytes = std::filesystem::file_size(path_, error);
  if (error || !unreadable_file_reason(path_).empty()) {
    return;  // `open` says what is wrong with it
  }
  const RehearsalLimits limits = rehearsal_limits(bytes);
  const std::string why = rehearse_in_child(limits, [&] {
    const KerasWeightsFile file(path_, format_version_);
    std::vector<float> values;
    for (const auto& layer : file.weighted_layers()) {
      for (size_t i = 0; i < layer.weights.size(); ++i) {
        double count = 1.0;
        for (const int64_t side : layer.weights[i].shape) {
          count *= static_cast<double>(side);
        }
        if (count * sizeof(float) <= static_cast<double>(limits.memory_bytes) / 2) {
          values.resize(static_cast<size_t>(count));
          file.read_into(layer, i, values.data());
        }
      }
    }
  });
  if (!why.empty()) {
    throw WeightsError(fmt::format(
        "{}: reading it {} in a separate process, expected a sound HDF5 file of {} bytes: it "
        "is damaged, or made to exhaust its reader",
        path_, why, bytes));
  }
}

void KerasWeightsFile::open() {
  if (const auto reason = unreadable_file_reason(path_); !reason.empty()) {
    throw WeightsError(fmt::format("{}: {}, expected Keras HDF5 weights", path_, reason));
  }
  if (!H5::H5File::isHdf5(path_)) {
    throw WeightsError(fmt::format("{}: not an HDF5 file, expected Keras HDF5 weights", path_));
  }
  try {
    file_.openFile(path_, H5F_ACC_RDONLY);
  } catch (const H5::Exception& error) {
    throw WeightsError(fmt::format(
        "{}: HDF5 cannot open it ({}), expected a complete file: it may be truncated or damaged",
        path_, error.getFuncName()));
  }
  // model.save() puts the save_weights layout under this group.
  root_ =
      file_.nameExists("model_weights") ? file_.openGroup("model_weights") : file_.openGroup("/");
}

void KerasWeightsFile::read_root_attributes() {
  for (const H5::H5Object* object :
       {static_cast<const H5::H5Object*>(&file_), static_cast<const H5::H5Object*>(&root_)}) {
    if (object->attrExists("fvc_format_version")) {
      int version = 0;
      object->openAttribute("fvc_format_version").read(H5::PredType::NATIVE_INT, &version);
      if (version != format_version_) {
        throw WeightsError(fmt::format("{}: fvc_format_version is {}, expected {}", path_, version,
                                       format_version_));
      }
    }
    if (object->attrExists("backend")) {
      const auto backend = read_string_list(*object, "backend", path_);
      theano_ = !backend.empty() && backend.front() == "theano";
    }
  }
  if (file_.attrExists("model_config")) {
    const auto config = read_string_list(file_, "model_config", path_);
    if (!config.empty()) {
      model_config_ = config.front();
    }
  }
}

void KerasWeightsFile::read_index() {
  if (!root_.attrExists("layer_names")) {
    throw WeightsError(fmt::format(
        "{}: attribute 'layer_names' is missing, expected a Keras save_weights or model.save file",
        path_));
  }
  for (const auto& name : read_string_list(root_, "layer_names", path_)) {
    if (!root_.nameExists(name)) {
      throw WeightsError(fmt::format(
          "{}: group '{}' is missing, expected one for every entry of layer_names", path_, name));
    }
    H5::Group group = root_.openGroup(name);
    if (!group.attrExists("weight_names")) {
      throw WeightsError(fmt::format(
          "{}: group '{}' has no attribute weight_names, expected the names of its weights", path_,
          name));
    }
    StoredLayer layer{name, {}};
    for (const auto& weight_name : read_string_list(group, "weight_names", path_)) {
      const std::string where = fmt::format("{}/{}", name, weight_name);
      if (!group.nameExists(weight_name)) {
        throw WeightsError(
            fmt::format("{}: dataset '{}' is missing, expected the weight that "
                        "weight_names lists",
                        path_, where));
      }
      H5::DataSet dataset = group.openDataSet(weight_name);
      if (dataset.getTypeClass() != H5T_FLOAT) {
        throw WeightsError(
            fmt::format("{}: dataset '{}' does not hold floating-point numbers", path_, where));
      }
      layer.weights.push_back({weight_name, dataset_shape(dataset)});
    }
    if (!layer.weights.empty()) {
      layers_.push_back(std::move(layer));
    }
  }
}

torch::Tensor KerasWeightsFile::read(const StoredLayer& layer, size_t index) const {
  auto tensor = torch::empty(layer.weights.at(index).shape, torch::kFloat);
  read_into(layer, index, tensor.data_ptr<float>());
  // Theano convolves, TensorFlow correlates: Keras stores Theano kernels turned by 180 degrees.
  if (theano_ && tensor.dim() == 4) {
    tensor = tensor.flip({0, 1}).contiguous();
  }
  return tensor;
}

// Reads weight `index` of `layer` into `values`, which has room for all of it.
void KerasWeightsFile::read_into(const StoredLayer& layer, size_t index, float* values) const {
  const StoredWeight& weight = layer.weights.at(index);
  const Hdf5Lock lock;
  try {
    root_.openGroup(layer.name).openDataSet(weight.name).read(values, H5::PredType::NATIVE_FLOAT);
  } catch (const H5::Exception& error) {
    throw WeightsError(fmt::format("{}: cannot read dataset '{}/{}': {} ({})", path_, layer.name,
                                   weight.name, error.getDetailMsg(), error.getFuncName()));
  }
}

}  // namespace fvc::detail
