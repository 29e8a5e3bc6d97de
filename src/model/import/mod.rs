//! Reading checkpoints written by other programs (Python `torch.save`, SLRT `.ckpt`).
//!
//! [`load_torch_file`] reads any `torch.save` file (zip or legacy layout) into a [`PyValue`]
//! tree without executing pickled code; [`load_state_dict`] and [`load_tensor_dict`] pull the
//! tensors out of the reference's checkpoints and `gloss_embeddings.bin`;
//! [`reference_s3d_weights`] and [`remap_prefix`] translate the reference's key conventions.
mod convert;
mod legacy;
mod pickle_graph;
mod pickle_opcodes;
mod pickle_vm;
pub mod state_dict;
mod storage;
pub mod torch_file;
pub mod value;

pub use pickle_vm::PickleError;
pub use state_dict::{
    load_state_dict, load_tensor_dict, reference_s3d_weights, remap_prefix, state_dict,
    tensor_dict, ReferenceCheckpoint, SLRT_VISUAL_BACKBONE_PREFIX, STATE_DICT_ENTRIES,
};
pub use torch_file::{load_pickle_bytes, load_torch_file, TorchFileError, ValueError};
pub use value::{OpaqueValue, PyValue, TensorRef};
