#include "keras_weights.h"

#include <H5Cpp.h>

#include <algorithm>

#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "file_checks.h"
#include "fvc/error.h"
#include "keras_json.h"

namespace fvc::detail {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

// ~~~ attributes ~~~

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

// Reads a string attribute, scalar or array, fixed- or variable-length.
// Keras writes an empty float array where a layer has no weights: that reads as no strings.
std::vector<std::string> read_string_list(const H5::H5Object& object, const char* name,
                                          const std::string& where) {
  H5::Attribute attribute = object.openAttribute(name);
  H5::DataSpace space = attribute.getSpace();
  const auto count = static_cast<size_t>(space.getSimpleExtentNpoints());
  if (attribute.getTypeClass() != H5T_STRING) {
    if (count == 0) {
      return {};
    }
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

// ~~~ reading ~~~

class WeightsReader {
 public:
  WeightsReader(std::string path, int format_version)
      : path_(std::move(path)), format_version_(format_version) {}

  std::vector<KerasLayerWeights> read(const std::vector<KerasLayerWeights>& expected) {
    open_file();
    check_root_attributes();

    std::vector<H5::DataSet> datasets;
    for (const auto& layer : expected) {
      open_layer(layer, datasets);
    }

    // Shapes all agree, so now the data.
    std::vector<KerasLayerWeights> result = expected;
    size_t next = 0;
    for (auto& layer : result) {
      for (size_t i = 0; i < layer.tensors.size(); ++i) {
        layer.tensors[i] = torch::empty(layer.tensors[i].sizes(), torch::kFloat);
        datasets[next++].read(layer.tensors[i].data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
        flip_theano_kernel(layer.tensors[i]);
      }
    }
    return result;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw WeightsError(fmt::format("{}: {}", path_, what));
  }

  void open_file() {
    if (const auto reason = unreadable_file_reason(path_); !reason.empty()) {
      fail(reason + ", expected Keras HDF5 weights");
    }
    if (!H5::H5File::isHdf5(path_)) {
      fail("not an HDF5 file, expected Keras HDF5 weights");
    }
    file_.openFile(path_, H5F_ACC_RDONLY);
    // model.save() puts the save_weights layout under this group.
    root_ =
        file_.nameExists("model_weights") ? file_.openGroup("model_weights") : file_.openGroup("/");
  }

  void check_root_attributes() {
    if (file_.attrExists("fvc_format_version")) {
      int version = 0;
      file_.openAttribute("fvc_format_version").read(H5::PredType::NATIVE_INT, &version);
      if (version != format_version_) {
        fail(fmt::format("fvc_format_version is {}, expected {}", version, format_version_));
      }
    }
    for (const H5::H5Object* object :
         {static_cast<const H5::H5Object*>(&file_), static_cast<const H5::H5Object*>(&root_)}) {
      if (object->attrExists("backend")) {
        const auto backend = read_string_list(*object, "backend", path_);
        theano_ = !backend.empty() && backend.front() == "theano";
      }
    }
  }

  void open_layer(const KerasLayerWeights& layer, std::vector<H5::DataSet>& datasets) {
    if (!root_.nameExists(layer.layer)) {
      fail(fmt::format("group '{}' is missing, expected the weights of layer {}", layer.layer,
                       layer.layer));
    }
    H5::Group group = root_.openGroup(layer.layer);
    if (!group.attrExists("weight_names")) {
      fail(fmt::format("group '{}' has no attribute weight_names, expected {} names", layer.layer,
                       layer.names.size()));
    }
    const auto names = read_string_list(group, "weight_names", path_);
    if (names.size() != layer.names.size()) {
      fail(fmt::format("group '{}' has {} weights, expected {} ({})", layer.layer, names.size(),
                       layer.names.size(), fmt::join(layer.names, ", ")));
    }

    for (size_t i = 0; i < names.size(); ++i) {
      const std::string where = fmt::format("{}/{}", layer.layer, names[i]);
      if (!group.nameExists(names[i])) {
        fail(fmt::format("dataset '{}' is missing, expected {}", where,
                         shape_text(layer.tensors[i].sizes().vec())));
      }
      H5::DataSet dataset = group.openDataSet(names[i]);
      const auto found = dataset_shape(dataset);
      const auto wanted = layer.tensors[i].sizes().vec();
      if (found != wanted) {
        fail(fmt::format("dataset '{}' has shape {}, expected {}", where, shape_text(found),
                         shape_text(wanted)));
      }
      if (dataset.getTypeClass() != H5T_FLOAT) {
        fail(fmt::format("dataset '{}' does not hold floating-point numbers", where));
      }
      datasets.push_back(std::move(dataset));
    }
  }

  // Theano convolves, TensorFlow correlates: Keras stores Theano kernels turned by 180 degrees.
  void flip_theano_kernel(torch::Tensor& tensor) const {
    if (theano_ && tensor.dim() == 4) {
      tensor = tensor.flip({0, 1}).contiguous();
    }
  }

  std::string path_;
  int format_version_;
  H5::H5File file_;
  H5::Group root_;
  bool theano_ = false;
};

}  // namespace

void write_keras_weights(const std::string& path, const std::vector<std::string>& layer_names,
                         const std::vector<KerasLayerWeights>& weights, int format_version) {
  H5::Exception::dontPrint();
  write_atomically(path, [&](const std::string& temp_path) {
    try {
      H5::H5File file(temp_path, H5F_ACC_TRUNC);
      write_string_list(file, "layer_names", layer_names);
      write_string(file, "backend", "tensorflow");
      write_string(file, "keras_version", kKerasVersion);
      const int version = format_version;
      file.createAttribute("fvc_format_version", H5::PredType::STD_I32LE, H5::DataSpace(H5S_SCALAR))
          .write(H5::PredType::NATIVE_INT, &version);

      for (const auto& layer_name : layer_names) {
        H5::Group group = file.createGroup(layer_name);
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
      file.close();
    } catch (const H5::Exception& error) {
      throw WeightsError(fmt::format("{}: cannot write HDF5 weights: {} ({})", path,
                                     error.getDetailMsg(), error.getFuncName()));
    }
  });
}

std::vector<KerasLayerWeights> read_keras_weights(const std::string& path,
                                                  const std::vector<KerasLayerWeights>& expected,
                                                  int format_version) {
  H5::Exception::dontPrint();
  try {
    return WeightsReader(path, format_version).read(expected);
  } catch (const H5::Exception& error) {
    throw WeightsError(fmt::format("{}: cannot read HDF5 weights: {} ({})", path,
                                   error.getDetailMsg(), error.getFuncName()));
  }
}

}  // namespace fvc::detail
