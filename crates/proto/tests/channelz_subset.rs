//! calcmesh's `proto/grpc/channelz/v1/channelz.proto` is a part of gRPC's own, not a variant of
//! it: every message, enum value, field and RPC it has is in the official file (Debian's
//! `grpc-proto`) with the same number, type, label and oneof, so any channelz reader decodes
//! what calcmesh sends.

use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto};

const OFFICIAL_ROOT: &str = "/usr/share/grpc-proto";

fn channelz(includes: &str) -> FileDescriptorProto {
    let set = protox::compile(["grpc/channelz/v1/channelz.proto"], [includes])
        .unwrap_or_else(|e| panic!("{includes}: {e}"));
    set.file
        .into_iter()
        .find(|f| f.name() == "grpc/channelz/v1/channelz.proto")
        .unwrap()
}

fn check_enum(path: &str, ours: &EnumDescriptorProto, theirs: &EnumDescriptorProto) {
    for value in &ours.value {
        let official = theirs
            .value
            .iter()
            .find(|v| v.name() == value.name())
            .unwrap_or_else(|| panic!("{path}.{} is not in the official enum", value.name()));
        assert_eq!(value.number(), official.number(), "{path}.{}", value.name());
    }
}

fn check_message(path: &str, ours: &DescriptorProto, theirs: &DescriptorProto) {
    let oneof = |m: &DescriptorProto, index: Option<i32>| {
        index.map(|i| m.oneof_decl[i as usize].name().to_owned())
    };
    for field in &ours.field {
        let name = format!("{path}.{}", field.name());
        let official = theirs
            .field
            .iter()
            .find(|f| f.name() == field.name())
            .unwrap_or_else(|| panic!("{name} is not in the official message"));
        assert_eq!(field.number(), official.number(), "{name}: number");
        assert_eq!(field.r#type(), official.r#type(), "{name}: type");
        assert_eq!(
            field.type_name(),
            official.type_name(),
            "{name}: message type"
        );
        assert_eq!(field.label(), official.label(), "{name}: label");
        assert_eq!(
            oneof(ours, field.oneof_index),
            oneof(theirs, official.oneof_index),
            "{name}: oneof"
        );
    }
    for nested in &ours.nested_type {
        check_message(
            &format!("{path}.{}", nested.name()),
            nested,
            find(&theirs.nested_type, nested.name(), path),
        );
    }
    for e in &ours.enum_type {
        let official = theirs
            .enum_type
            .iter()
            .find(|t| t.name() == e.name())
            .unwrap_or_else(|| panic!("{path}.{} is not an official enum", e.name()));
        check_enum(&format!("{path}.{}", e.name()), e, official);
    }
}

fn find<'a>(messages: &'a [DescriptorProto], name: &str, path: &str) -> &'a DescriptorProto {
    messages
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("{path}.{name} is not an official message"))
}

#[test]
fn calcmesh_channelz_is_a_subset_of_the_official_proto() {
    assert!(
        std::path::Path::new(OFFICIAL_ROOT)
            .join("grpc/channelz/v1/channelz.proto")
            .exists(),
        "{OFFICIAL_ROOT}/grpc/channelz/v1/channelz.proto is missing: ./scripts/test installs \
         Debian's grpc-proto"
    );
    let ours = channelz(concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto"));
    let theirs = channelz(OFFICIAL_ROOT);
    assert_eq!(ours.package(), theirs.package());
    for message in &ours.message_type {
        check_message(
            message.name(),
            message,
            find(&theirs.message_type, message.name(), "grpc.channelz.v1"),
        );
    }
    let (service, official) = (&ours.service[0], &theirs.service[0]);
    assert_eq!(service.name(), official.name());
    assert_eq!(service.method.len(), official.method.len(), "every RPC");
    for method in &service.method {
        let o = official
            .method
            .iter()
            .find(|m| m.name() == method.name())
            .unwrap_or_else(|| panic!("{} is not an official RPC", method.name()));
        assert_eq!(
            (method.input_type(), method.output_type()),
            (o.input_type(), o.output_type()),
            "{}",
            method.name()
        );
    }
}
