pub mod proto {
    tonic::include_proto!("fairtrail.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fairtrail_descriptor");
}
