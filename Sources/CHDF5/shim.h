// libhdf5 (C) for the Keras .h5 checkpoint reader. Several of HDF5's constants are macros that call H5open()
// or cast, which Swift cannot import; these inline functions hand them over as plain values.
#ifndef FLINT_CHDF5_SHIM_H
#define FLINT_CHDF5_SHIM_H

#include <hdf5.h>

static inline unsigned flint_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline hid_t flint_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t flint_h5e_default(void) { return H5E_DEFAULT; }
static inline hid_t flint_h5s_all(void) { return H5S_ALL; }
static inline haddr_t flint_haddr_undef(void) { return HADDR_UNDEF; }
static inline hid_t flint_h5t_c_s1(void) { return H5T_C_S1; }
static inline size_t flint_h5t_variable(void) { return H5T_VARIABLE; }

/// Frees the strings HDF5 allocated when reading variable-length data (H5Treclaim replaces H5Dvlen_reclaim in 1.12).
static inline herr_t flint_h5_reclaim(hid_t type_id, hid_t space_id, void *buf) {
#if H5_VERS_MAJOR > 1 || (H5_VERS_MAJOR == 1 && H5_VERS_MINOR >= 12)
    return H5Treclaim(type_id, space_id, H5P_DEFAULT, buf);
#else
    return H5Dvlen_reclaim(type_id, space_id, H5P_DEFAULT, buf);
#endif
}

// For tests that write small HDF5 files of their own.
static inline unsigned flint_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t flint_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t flint_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t flint_h5t_ieee_f32be(void) { return H5T_IEEE_F32BE; }
static inline hid_t flint_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }

#endif
