#pragma once

#include <functional>
#include <string>

#include <H5Cpp.h>

namespace fvc::detail {

/// Writes an HDF5 file to `path` atomically. `fill` builds the file in memory (HDF5's core
/// driver, with nothing written behind it); its bytes then go to disk through
/// `write_atomically`. A disk that fills up fails that plain write, reported as `Error` naming
/// `path`. Were HDF5 writing the file itself, the failure would reach it while it flushes:
/// HDF5 1.10 then keeps a file it cannot close and crashes the process when it exits.
/// H5::Exception from `fill` propagates unchanged.
void write_hdf5_atomically(const std::string& path,
                           const std::function<void(H5::H5File& file)>& fill);

}  // namespace fvc::detail
