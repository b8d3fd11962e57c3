//! The one table of client-facing error codes, and `ApiError`, the error every handler returns.
//!
//! An `ApiError` does not render itself: it rides in the response's extensions and the envelope
//! layer (`http::envelope`) renders it as a v1.1 status (JSON or XML) or a v2 `errors` list,
//! depending on the request. That keeps one error type for every API version.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A stable client-facing error: numeric code, HTTP status and default message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidInput,
    AuthenticationFailed,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    IdempotencyInProgress,
    BodyTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    RateLimited,
    Internal,
    Unavailable,
    BatchTooLarge,
    AttributionLookupTypeRequired,
    EntityNameExists,
    NotAdminUser,
    InvalidParentEntity,
    InvalidMobile,
    InvalidEmail,
    InvalidExternalId,
    MobileRequired,
    NoPrimaryIdentifier,
    CustomerNotFoundByIdentifier,
    CustomerAlreadyRegistered,
    EmailTaken,
    CustomerNotFoundForOrg,
    InvalidSource,
    InvalidLookupIdentifier,
    CustomerNotFound,
    NoImageGiven,
    ImageSizeOutOfBounds,
    CustomerNotFoundByMobileEmailExternalId,
    NoIdentifierGiven,
    NewEmailExists,
    NewExternalIdExists,
    NewMobileExists,
    OldValueInvalid,
    InvalidBillAmount,
    InvalidTransactionNumber,
    InvalidTransactionId,
    DuplicateTransactionNumber,
    NoTransactionId,
    TransactionNotFound,
    ReturnBeforeSale,
    ParentBillNotFound,
    ReturnQtyExceedsPurchase,
    NegativeQty,
    InvalidReturnType,
    ReturnAmountExceedsPurchase,
    NumberToReturnNotSet,
    AlreadyLineItemReturned,
    AlreadyFullyReturned,
    AlreadyAmountReturned,
    AlreadyReturned,
    DateTooFarInFuture,
    DateTooFarInPast,
    InvalidReturnLineItem,
    NegativeLineAmount,
    NegativeLineValue,
    NegativeLineRate,
    NegativeLineDiscount,
    NegativeGrossAmount,
    NegativeDiscount,
    TransactionIdNotFoundForCustomer,
    TransactionNumberNotFoundForCustomer,
    CustomFieldUpdateFailed,
    InvalidStoreOrTill,
    AlreadyRetro,
    ClientSignatureMissing,
    InvalidProgramId,
    TransactionRejected,
    TransactionRejectedPermanently,
    EventAttributeRequired,
    EventAlreadyExists,
    InvalidEventActions,
    InvalidEventName,
    EventDisabled,
    InvalidEventFieldType,
    InvalidPoints,
    PointsMoreThanAvailable,
    InsufficientCurrentPoints,
    PointsNotInMultiples,
    CustomerMarkedFraud,
    InvalidValidationCode,
    ReversalPointsMismatch,
    RedemptionNotFound,
    RedemptionAlreadyReversed,
    PointsAboveMaximum,
    PointsBelowMinimum,
    InsufficientLifetimePoints,
    InsufficientLifetimePurchases,
    TransferReceiverFraud,
    TransferSameCustomer,
    PointsTransferNotAllowed,
    UnknownAlternateCurrency,
    PointsAwardNotFound,
    InvalidGroupDetails,
    InvalidRequestType,
    InvalidRequestBaseType,
    NotYetSupported,
    MessageNotSent,
    EmailNotSent,
    InvalidTemplateType,
    TemplateNotFound,
    TemplateUpdateFailed,
    InvalidEmailId,
    MessageNotFound,
    TaskFailed,
    TaskUpdateFailed,
    TaskIdMissing,
    TaskIdInvalid,
    TaskInvalidParameters,
    TaskSaveFailed,
    TaskInvalidStatus,
    TaskEndBeforeStart,
    TaskExpiryBeforeEnd,
    TasksNotFound,
    TaskInvalidExecutor,
    TaskInvalidCustomerOrCreator,
    TaskStoreIdRequired,
    LoyaltyProgramNotEnrolled,
    InvalidTierName,
    InvalidTierAction,
    InvalidTierValidity,
    /// Warning: the referral code names no customer of the org; the referral is not recorded.
    InvalidReferralCode,
    CouponInvalidInput,
    CouponRevoked,
    NoRedemptionId,
    InvalidRedemptionIds,
    CouponCustomerNotFound,
    InvalidCouponCode,
    CouponNotIssuedToCustomer,
    CouponSmsFailed,
    UnableToRedeemCoupon,
    InvalidCouponSeries,
    CouponRedemptionFailed,
    CouponNotForCustomer,
    CouponAlreadyRedeemed,
    CouponSeriesExpired,
    CouponExpired,
    CouponMaxRedemptionsReached,
    CouponNotForOrg,
    CouponRedeemedByCustomer,
    CouponTransactionNumberRequired,
    CouponCodeNotFound,
    CouponCustomerInvalid,
    CouponIssueFailed,
    CouponCustomerLimitReached,
    CouponMessageNotSent,
    CouponStoreNotAllowed,
    CouponValidationCodeInvalid,
}

/// One row of the error table.
pub struct CodeInfo {
    pub code: u32,
    pub http: u16,
    pub name: &'static str,
    pub message: &'static str,
}

impl Code {
    /// Every code, in table order (used to generate and check `docs/errors.md`).
    pub const ALL: [Code; 151] = [
        Code::InvalidInput,
        Code::AuthenticationFailed,
        Code::PermissionDenied,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::IdempotencyInProgress,
        Code::BodyTooLarge,
        Code::UnsupportedMediaType,
        Code::IdempotencyKeyReused,
        Code::RateLimited,
        Code::Internal,
        Code::Unavailable,
        Code::BatchTooLarge,
        Code::AttributionLookupTypeRequired,
        Code::EntityNameExists,
        Code::NotAdminUser,
        Code::InvalidParentEntity,
        Code::InvalidMobile,
        Code::InvalidEmail,
        Code::InvalidExternalId,
        Code::MobileRequired,
        Code::NoPrimaryIdentifier,
        Code::CustomerNotFoundByIdentifier,
        Code::CustomerAlreadyRegistered,
        Code::EmailTaken,
        Code::CustomerNotFoundForOrg,
        Code::InvalidSource,
        Code::InvalidLookupIdentifier,
        Code::CustomerNotFound,
        Code::NoImageGiven,
        Code::ImageSizeOutOfBounds,
        Code::CustomerNotFoundByMobileEmailExternalId,
        Code::NoIdentifierGiven,
        Code::NewEmailExists,
        Code::NewExternalIdExists,
        Code::NewMobileExists,
        Code::OldValueInvalid,
        Code::InvalidBillAmount,
        Code::InvalidTransactionNumber,
        Code::InvalidTransactionId,
        Code::DuplicateTransactionNumber,
        Code::NoTransactionId,
        Code::TransactionNotFound,
        Code::ReturnBeforeSale,
        Code::ParentBillNotFound,
        Code::ReturnQtyExceedsPurchase,
        Code::NegativeQty,
        Code::InvalidReturnType,
        Code::ReturnAmountExceedsPurchase,
        Code::NumberToReturnNotSet,
        Code::AlreadyLineItemReturned,
        Code::AlreadyFullyReturned,
        Code::AlreadyAmountReturned,
        Code::AlreadyReturned,
        Code::DateTooFarInFuture,
        Code::DateTooFarInPast,
        Code::InvalidReturnLineItem,
        Code::NegativeLineAmount,
        Code::NegativeLineValue,
        Code::NegativeLineRate,
        Code::NegativeLineDiscount,
        Code::NegativeGrossAmount,
        Code::NegativeDiscount,
        Code::TransactionIdNotFoundForCustomer,
        Code::TransactionNumberNotFoundForCustomer,
        Code::CustomFieldUpdateFailed,
        Code::InvalidStoreOrTill,
        Code::AlreadyRetro,
        Code::ClientSignatureMissing,
        Code::InvalidProgramId,
        Code::TransactionRejected,
        Code::TransactionRejectedPermanently,
        Code::EventAttributeRequired,
        Code::EventAlreadyExists,
        Code::InvalidEventActions,
        Code::InvalidEventName,
        Code::EventDisabled,
        Code::InvalidEventFieldType,
        Code::InvalidPoints,
        Code::PointsMoreThanAvailable,
        Code::InsufficientCurrentPoints,
        Code::PointsNotInMultiples,
        Code::CustomerMarkedFraud,
        Code::InvalidValidationCode,
        Code::ReversalPointsMismatch,
        Code::RedemptionNotFound,
        Code::RedemptionAlreadyReversed,
        Code::PointsAboveMaximum,
        Code::PointsBelowMinimum,
        Code::InsufficientLifetimePoints,
        Code::InsufficientLifetimePurchases,
        Code::TransferReceiverFraud,
        Code::TransferSameCustomer,
        Code::PointsTransferNotAllowed,
        Code::UnknownAlternateCurrency,
        Code::PointsAwardNotFound,
        Code::InvalidGroupDetails,
        Code::InvalidRequestType,
        Code::InvalidRequestBaseType,
        Code::NotYetSupported,
        Code::MessageNotSent,
        Code::EmailNotSent,
        Code::InvalidTemplateType,
        Code::TemplateNotFound,
        Code::TemplateUpdateFailed,
        Code::InvalidEmailId,
        Code::MessageNotFound,
        Code::TaskFailed,
        Code::TaskUpdateFailed,
        Code::TaskIdMissing,
        Code::TaskIdInvalid,
        Code::TaskInvalidParameters,
        Code::TaskSaveFailed,
        Code::TaskInvalidStatus,
        Code::TaskEndBeforeStart,
        Code::TaskExpiryBeforeEnd,
        Code::TasksNotFound,
        Code::TaskInvalidExecutor,
        Code::TaskInvalidCustomerOrCreator,
        Code::TaskStoreIdRequired,
        Code::LoyaltyProgramNotEnrolled,
        Code::InvalidTierName,
        Code::InvalidTierAction,
        Code::InvalidTierValidity,
        Code::InvalidReferralCode,
        Code::CouponInvalidInput,
        Code::CouponRevoked,
        Code::NoRedemptionId,
        Code::InvalidRedemptionIds,
        Code::CouponCustomerNotFound,
        Code::InvalidCouponCode,
        Code::CouponNotIssuedToCustomer,
        Code::CouponSmsFailed,
        Code::UnableToRedeemCoupon,
        Code::InvalidCouponSeries,
        Code::CouponRedemptionFailed,
        Code::CouponNotForCustomer,
        Code::CouponAlreadyRedeemed,
        Code::CouponSeriesExpired,
        Code::CouponExpired,
        Code::CouponMaxRedemptionsReached,
        Code::CouponNotForOrg,
        Code::CouponRedeemedByCustomer,
        Code::CouponTransactionNumberRequired,
        Code::CouponCodeNotFound,
        Code::CouponCustomerInvalid,
        Code::CouponIssueFailed,
        Code::CouponCustomerLimitReached,
        Code::CouponMessageNotSent,
        Code::CouponStoreNotAllowed,
        Code::CouponValidationCodeInvalid,
    ];

    pub const fn info(self) -> CodeInfo {
        let (code, http, name, message) = match self {
            Code::InvalidInput => (400, 400, "InvalidInput", "Invalid input"),
            Code::AuthenticationFailed => (
                401,
                401,
                "AuthenticationFailed",
                "Authentication failed. Please check username and password.",
            ),
            Code::PermissionDenied => {
                (403, 403, "PermissionDenied", "Access denied: the API key lacks the permission")
            }
            Code::NotFound => (404, 404, "NotFound", "Resource not found"),
            Code::MethodNotAllowed => {
                (405, 405, "MethodNotAllowed", "Operation not supported on the resource")
            }
            Code::IdempotencyInProgress => (
                409,
                409,
                "IdempotencyInProgress",
                "A request with this Idempotency-Key is still in progress",
            ),
            Code::BodyTooLarge => (413, 413, "BodyTooLarge", "Request body is too large"),
            Code::UnsupportedMediaType => (
                415,
                415,
                "UnsupportedMediaType",
                "Unsupported media type: set Content-Type to application/json or application/xml",
            ),
            Code::IdempotencyKeyReused => (
                422,
                422,
                "IdempotencyKeyReused",
                "Idempotency-Key was already used with a different request",
            ),
            Code::RateLimited => (429, 429, "RateLimited", "Rate limit exceeded, retry later"),
            Code::Internal => (500, 500, "Internal", "Internal server error"),
            Code::Unavailable => (503, 503, "Unavailable", "Service unavailable"),
            Code::BatchTooLarge => (1060, 400, "BatchTooLarge", "Batch size limit exceeded"),
            Code::AttributionLookupTypeRequired => (
                1061,
                400,
                "AttributionLookupTypeRequired",
                "X-CAP-API-ATTRIBUTION-LOOKUP-TYPE is required with X-CAP-API-ATTRIBUTION-LOOKUP",
            ),
            Code::EntityNameExists => {
                (1207, 400, "EntityNameExists", "Name is already used by another entity")
            }
            Code::NotAdminUser => (1209, 403, "NotAdminUser", "Not an admin user"),
            Code::InvalidParentEntity => {
                (1214, 400, "InvalidParentEntity", "Parent entity is invalid")
            }
            Code::InvalidMobile => (1001, 400, "InvalidMobile", "Invalid mobile number"),
            Code::InvalidEmail => (1002, 400, "InvalidEmail", "Invalid email"),
            Code::InvalidExternalId => (1003, 400, "InvalidExternalId", "Invalid external id"),
            Code::MobileRequired => (1006, 400, "MobileRequired", "Mobile number is required"),
            Code::NoPrimaryIdentifier => (
                1007,
                400,
                "NoPrimaryIdentifier",
                "No valid primary identifier (mobile, email or external id)",
            ),
            Code::CustomerNotFoundByIdentifier => {
                (1011, 404, "CustomerNotFoundByIdentifier", "Customer not found for the identifier")
            }
            Code::CustomerAlreadyRegistered => {
                (1014, 400, "CustomerAlreadyRegistered", "Customer is already registered")
            }
            Code::EmailTaken => {
                (1016, 400, "EmailTaken", "Email is already used by another customer")
            }
            Code::CustomerNotFoundForOrg => {
                (816, 404, "CustomerNotFoundForOrg", "Customer not found for this org")
            }
            Code::InvalidSource => (8003, 400, "InvalidSource", "Invalid source or accountId"),
            Code::InvalidLookupIdentifier => {
                (8013, 400, "InvalidLookupIdentifier", "Invalid identifier for lookup")
            }
            Code::CustomerNotFound => {
                (8015, 404, "CustomerNotFound", "Customer not found for the given identifiers")
            }
            Code::NoImageGiven => (8078, 400, "NoImageGiven", "No image passed for deletion"),
            Code::ImageSizeOutOfBounds => {
                (8083, 400, "ImageSizeOutOfBounds", "Uploaded image size is out of bounds")
            }
            Code::CustomerNotFoundByMobileEmailExternalId => (
                1012,
                404,
                "CustomerNotFoundByMobileEmailExternalId",
                "Customer not found for the mobile, email or external id",
            ),
            Code::NoIdentifierGiven => {
                (1015, 400, "NoIdentifierGiven", "No customer identifier provided")
            }
            Code::NewEmailExists => (9002, 400, "NewEmailExists", "New email already exists"),
            Code::NewExternalIdExists => {
                (9003, 400, "NewExternalIdExists", "New external id already exists")
            }
            Code::NewMobileExists => (9005, 400, "NewMobileExists", "New mobile already exists"),
            Code::OldValueInvalid => (9012, 400, "OldValueInvalid", "Old value is invalid"),
            Code::InvalidBillAmount => (601, 400, "InvalidBillAmount", "Invalid bill amount"),
            Code::InvalidTransactionNumber => {
                (602, 400, "InvalidTransactionNumber", "Invalid transaction number")
            }
            Code::InvalidTransactionId => {
                (603, 400, "InvalidTransactionId", "Invalid transaction id")
            }
            Code::DuplicateTransactionNumber => {
                (604, 400, "DuplicateTransactionNumber", "Duplicate transaction number")
            }
            Code::NoTransactionId => (607, 400, "NoTransactionId", "No transaction id"),
            Code::TransactionNotFound => {
                (620, 404, "TransactionNotFound", "Invalid transaction ID")
            }
            Code::ReturnBeforeSale => {
                (624, 400, "ReturnBeforeSale", "Return time is before the sale")
            }
            Code::ParentBillNotFound => {
                (625, 404, "ParentBillNotFound", "Parent bill for the return not found")
            }
            Code::ReturnQtyExceedsPurchase => (
                626,
                400,
                "ReturnQtyExceedsPurchase",
                "Returned quantity is more than purchased for the item code",
            ),
            Code::NegativeQty => (627, 400, "NegativeQty", "Negative quantity"),
            Code::InvalidReturnType => (628, 400, "InvalidReturnType", "Invalid return type"),
            Code::ReturnAmountExceedsPurchase => (
                630,
                400,
                "ReturnAmountExceedsPurchase",
                "Returned amount is more than the purchase amount",
            ),
            Code::NumberToReturnNotSet => {
                (631, 400, "NumberToReturnNotSet", "Transaction number to return is not set")
            }
            Code::AlreadyLineItemReturned => (
                632,
                400,
                "AlreadyLineItemReturned",
                "Transaction already has a line-item return; amount return refused",
            ),
            Code::AlreadyFullyReturned => {
                (633, 400, "AlreadyFullyReturned", "Transaction is already fully returned")
            }
            Code::AlreadyAmountReturned => (
                638,
                400,
                "AlreadyAmountReturned",
                "Transaction already has an amount return; line-item return refused",
            ),
            Code::AlreadyReturned => (
                639,
                400,
                "AlreadyReturned",
                "Transaction already has returns; full return refused",
            ),
            Code::DateTooFarInFuture => {
                (643, 400, "DateTooFarInFuture", "Transaction date is too far in the future")
            }
            Code::DateTooFarInPast => {
                (644, 400, "DateTooFarInPast", "Transaction date is too far in the past")
            }
            Code::InvalidReturnLineItem => {
                (660, 400, "InvalidReturnLineItem", "Invalid return line item")
            }
            Code::NegativeLineAmount => {
                (661, 400, "NegativeLineAmount", "Negative line item amount")
            }
            Code::NegativeLineValue => (662, 400, "NegativeLineValue", "Negative line item value"),
            Code::NegativeLineRate => (663, 400, "NegativeLineRate", "Negative line item rate"),
            Code::NegativeLineDiscount => {
                (664, 400, "NegativeLineDiscount", "Negative line item discount")
            }
            Code::NegativeGrossAmount => (665, 400, "NegativeGrossAmount", "Negative gross amount"),
            Code::NegativeDiscount => (666, 400, "NegativeDiscount", "Negative discount"),
            Code::TransactionIdNotFoundForCustomer => (
                667,
                404,
                "TransactionIdNotFoundForCustomer",
                "Transaction id not found for the customer",
            ),
            Code::TransactionNumberNotFoundForCustomer => (
                668,
                404,
                "TransactionNumberNotFoundForCustomer",
                "Transaction number not found for the customer",
            ),
            Code::CustomFieldUpdateFailed => {
                (669, 400, "CustomFieldUpdateFailed", "Custom field update failed")
            }
            Code::InvalidStoreOrTill => {
                (671, 400, "InvalidStoreOrTill", "Invalid store or till code")
            }
            Code::AlreadyRetro => {
                (1627, 400, "AlreadyRetro", "Transaction is already retro-converted")
            }
            Code::ClientSignatureMissing => {
                (1629, 400, "ClientSignatureMissing", "X-CAP-CLIENT-SIGNATURE header is mandatory")
            }
            Code::InvalidProgramId => (1101, 400, "InvalidProgramId", "Invalid programId"),
            Code::TransactionRejected => (
                690,
                400,
                "TransactionRejected",
                "Transaction rejected: queued as pending for re-processing",
            ),
            Code::TransactionRejectedPermanently => (
                691,
                400,
                "TransactionRejectedPermanently",
                "Transaction rejected: failed permanently",
            ),
            Code::EventAttributeRequired => (
                1802,
                400,
                "EventAttributeRequired",
                "Field attribute value fails for validation type isRequired",
            ),
            Code::EventAlreadyExists => (1806, 400, "EventAlreadyExists", "Event already exists"),
            Code::InvalidEventActions => {
                (1810, 400, "InvalidEventActions", "Event actions invalid")
            }
            Code::InvalidEventName => (1811, 400, "InvalidEventName", "Event name invalid"),
            Code::EventDisabled => {
                (1812, 400, "EventDisabled", "Event is disabled and accepts no posts")
            }
            Code::InvalidEventFieldType => {
                (1823, 400, "InvalidEventFieldType", "Invalid event field type")
            }
            Code::InvalidPoints => (801, 400, "InvalidPoints", "Invalid points value"),
            Code::PointsMoreThanAvailable => (
                803,
                400,
                "PointsMoreThanAvailable",
                "Points to redeem are more than the points available",
            ),
            Code::InsufficientCurrentPoints => {
                (804, 400, "InsufficientCurrentPoints", "Insufficient current points")
            }
            Code::PointsNotInMultiples => {
                (807, 400, "PointsNotInMultiples", "Points are not in the allowed multiples")
            }
            Code::CustomerMarkedFraud => {
                (809, 400, "CustomerMarkedFraud", "Customer is marked as fraud")
            }
            Code::InvalidValidationCode => {
                (808, 400, "InvalidValidationCode", "Unable to redeem. Validation code is invalid")
            }
            Code::ReversalPointsMismatch => {
                (810, 400, "ReversalPointsMismatch", "Mismatch in points for revert API call")
            }
            Code::RedemptionNotFound => (
                814,
                404,
                "RedemptionNotFound",
                "No points were redeemed on this transaction number",
            ),
            Code::RedemptionAlreadyReversed => {
                (812, 400, "RedemptionAlreadyReversed", "The points have been reverted already")
            }
            Code::PointsAboveMaximum => {
                (819, 400, "PointsAboveMaximum", "Points exceed the maximum per transaction")
            }
            Code::PointsBelowMinimum => {
                (821, 400, "PointsBelowMinimum", "Points are below the minimum to redeem")
            }
            Code::InsufficientLifetimePoints => {
                (805, 400, "InsufficientLifetimePoints", "Insufficient lifetime points")
            }
            Code::InsufficientLifetimePurchases => (
                806,
                400,
                "InsufficientLifetimePurchases",
                "Insufficient lifetime purchases amount",
            ),
            Code::TransferReceiverFraud => (
                414,
                400,
                "TransferReceiverFraud",
                "Destination customer is marked as fraud: points cannot be transferred to them",
            ),
            Code::TransferSameCustomer => {
                (418, 400, "TransferSameCustomer", "From and to customers are the same")
            }
            Code::PointsTransferNotAllowed => (
                830,
                403,
                "PointsTransferNotAllowed",
                "Points transfer is not enabled for the org (ALLOW_POINTS_TRANSFER)",
            ),
            Code::UnknownAlternateCurrency => {
                (840, 400, "UnknownAlternateCurrency", "Unknown alternate currency")
            }
            Code::PointsAwardNotFound => {
                (841, 404, "PointsAwardNotFound", "Points award not found for the customer")
            }
            Code::InvalidGroupDetails => {
                (93026, 400, "InvalidGroupDetails", "Invalid group details provided")
            }
            Code::InvalidRequestType => {
                (9006, 400, "InvalidRequestType", "Request type is invalid")
            }
            Code::InvalidRequestBaseType => {
                (9008, 400, "InvalidRequestBaseType", "Request base type is invalid")
            }
            Code::NotYetSupported => (501, 501, "NotYetSupported", "Not supported yet"),
            Code::MessageNotSent => (4101, 400, "MessageNotSent", "Cannot send message"),
            Code::EmailNotSent => (4201, 400, "EmailNotSent", "Cannot send email"),
            Code::InvalidTemplateType => {
                (4203, 400, "InvalidTemplateType", "Invalid template type (channel)")
            }
            Code::TemplateNotFound => (4204, 404, "TemplateNotFound", "Template not found"),
            Code::TemplateUpdateFailed => {
                (4205, 400, "TemplateUpdateFailed", "Template add/update failed")
            }
            Code::InvalidEmailId => (4208, 400, "InvalidEmailId", "Invalid email id"),
            Code::MessageNotFound => {
                (4223, 404, "MessageNotFound", "Message not found for the org and messageId")
            }
            Code::TaskFailed => {
                (5201, 500, "TaskFailed", "Unable to fetch or add the task, or its metadata")
            }
            Code::TaskUpdateFailed => (5021, 500, "TaskUpdateFailed", "Unable to update the task"),
            Code::TaskIdMissing => (5203, 400, "TaskIdMissing", "No task identifier passed"),
            Code::TaskIdInvalid => {
                (5204, 400, "TaskIdInvalid", "Task identifier is invalid or empty")
            }
            Code::TaskInvalidParameters => {
                (5205, 400, "TaskInvalidParameters", "One or more parameters are invalid")
            }
            Code::TaskSaveFailed => (
                5206,
                400,
                "TaskSaveFailed",
                "Unable to add the status mapping or the task reminder",
            ),
            Code::TaskInvalidStatus => (5207, 400, "TaskInvalidStatus", "Invalid status passed"),
            Code::TaskEndBeforeStart => (
                5208,
                400,
                "TaskEndBeforeStart",
                "End date must be after the start date (status mappings: invalid internal status)",
            ),
            Code::TaskExpiryBeforeEnd => {
                (5209, 400, "TaskExpiryBeforeEnd", "Expiry date must be after the end date")
            }
            Code::TasksNotFound => (5211, 404, "TasksNotFound", "No tasks found"),
            Code::TaskInvalidExecutor => (
                5212,
                400,
                "TaskInvalidExecutor",
                "Executor id is invalid, or the customers are not registered in this org",
            ),
            Code::TaskInvalidCustomerOrCreator => (
                5213,
                400,
                "TaskInvalidCustomerOrCreator",
                "One or more customers are not registered, or the created-by id is invalid",
            ),
            Code::TaskStoreIdRequired => (
                5214,
                400,
                "TaskStoreIdRequired",
                "A user that is not a till must pass the store id",
            ),
            Code::LoyaltyProgramNotEnrolled => (
                8089,
                400,
                "LoyaltyProgramNotEnrolled",
                "Customer not registered for the Loyalty Program",
            ),
            Code::InvalidTierName => (1102, 400, "InvalidTierName", "Invalid tier (slab) name"),
            Code::InvalidTierAction => {
                (1103, 400, "InvalidTierAction", "Tier change not allowed for the current tier")
            }
            Code::InvalidTierValidity => {
                (1104, 400, "InvalidTierValidity", "Invalid tier validity")
            }
            Code::InvalidReferralCode => {
                (1095, 400, "InvalidReferralCode", "Invalid referral code: referral not recorded")
            }
            Code::CouponInvalidInput => (629, 400, "CouponInvalidInput", "Invalid coupon input"),
            Code::CouponRevoked => (660, 400, "CouponRevoked", "Coupon code has been revoked"),
            Code::NoRedemptionId => (661, 400, "NoRedemptionId", "No redemption id passed"),
            Code::InvalidRedemptionIds => {
                (510, 404, "InvalidRedemptionIds", "Invalid redemption ids present")
            }
            Code::CouponCustomerNotFound => {
                (701, 404, "CouponCustomerNotFound", "Customer not found for the given identifier")
            }
            Code::InvalidCouponCode => (702, 400, "InvalidCouponCode", "Coupon code is invalid"),
            Code::CouponNotIssuedToCustomer => {
                (703, 400, "CouponNotIssuedToCustomer", "Coupon not issued to this customer")
            }
            Code::CouponSmsFailed => {
                (704, 400, "CouponSmsFailed", "Could not send the coupon by SMS")
            }
            Code::UnableToRedeemCoupon => {
                (706, 400, "UnableToRedeemCoupon", "Unable to redeem coupon")
            }
            Code::InvalidCouponSeries => {
                (707, 404, "InvalidCouponSeries", "Coupon series id is invalid")
            }
            Code::CouponRedemptionFailed => {
                (709, 400, "CouponRedemptionFailed", "Coupon processing failed")
            }
            Code::CouponNotForCustomer => {
                (710, 400, "CouponNotForCustomer", "Coupon is not meant for this customer")
            }
            Code::CouponAlreadyRedeemed => {
                (711, 400, "CouponAlreadyRedeemed", "Coupon is already redeemed")
            }
            Code::CouponSeriesExpired => {
                (712, 400, "CouponSeriesExpired", "Coupon series has expired")
            }
            Code::CouponExpired => (713, 400, "CouponExpired", "Coupon has expired"),
            Code::CouponMaxRedemptionsReached => (
                714,
                400,
                "CouponMaxRedemptionsReached",
                "Maximum redemptions of the series are already reached",
            ),
            Code::CouponNotForOrg => {
                (715, 400, "CouponNotForOrg", "Coupon is not valid for this organization")
            }
            Code::CouponRedeemedByCustomer => (
                716,
                400,
                "CouponRedeemedByCustomer",
                "Same coupon cannot be redeemed multiple times",
            ),
            Code::CouponTransactionNumberRequired => (
                718,
                400,
                "CouponTransactionNumberRequired",
                "Transaction number is mandatory for redemption",
            ),
            Code::CouponCodeNotFound => {
                (719, 404, "CouponCodeNotFound", "Coupon code does not exist")
            }
            Code::CouponCustomerInvalid => (
                721,
                400,
                "CouponCustomerInvalid",
                "Customer is invalid for coupon issue or redemption",
            ),
            Code::CouponIssueFailed => (722, 400, "CouponIssueFailed", "Unable to issue coupon"),
            Code::CouponCustomerLimitReached => {
                (723, 400, "CouponCustomerLimitReached", "Coupon cannot be used by this customer")
            }
            Code::CouponMessageNotSent => {
                (724, 400, "CouponMessageNotSent", "Unable to send message")
            }
            Code::CouponStoreNotAllowed => {
                (725, 400, "CouponStoreNotAllowed", "Coupon cannot be redeemed at this store")
            }
            Code::CouponValidationCodeInvalid => (
                705,
                400,
                "CouponValidationCodeInvalid",
                "Coupon code and validation code both invalid",
            ),
        };
        CodeInfo { code, http, name, message }
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.info().http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The code for an HTTP status produced outside our handlers (axum, tower layers).
    pub fn for_status(status: StatusCode) -> Code {
        match status.as_u16() {
            401 => Code::AuthenticationFailed,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            413 => Code::BodyTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::RateLimited,
            503 => Code::Unavailable,
            400..=499 => Code::InvalidInput,
            _ => Code::Internal,
        }
    }
}

/// The error every handler and extractor returns.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: Cow<'static, str>,
    /// Seconds to wait before retrying, sent as `Retry-After` (rate limits).
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code) -> Self {
        ApiError { code, message: Cow::Borrowed(code.info().message), retry_after_seconds: None }
    }

    pub fn with_message(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { code, message: message.into(), retry_after_seconds: None }
    }

    /// Bad input; the message names the field and the reason.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::with_message(Code::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::with_message(Code::NotFound, message)
    }

    /// An unexpected failure: the cause is logged here, once, and the client sees a generic text.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(Code::Internal)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.info().code)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        // A full pool is load, not a fault: the client may retry (503, logged as a warning).
        if matches!(e, crate::db::DbError::Sqlx(sqlx::Error::PoolTimedOut)) {
            tracing::warn!("database pool exhausted");
            return ApiError::with_message(Code::Unavailable, "Database busy, retry later");
        }
        ApiError::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The error table as the Markdown of `docs/errors.md`.
pub fn errors_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\nGenerated from `src/error.rs` (`UPDATE_DOCS=1 cargo test errors_doc` rewrites it).\n\
         v1.1 responses carry the code in `status.code` (request level) or `item_status.code` (item level);\n\
         v2 responses carry it in `errors[].code`. The HTTP status is the one shown.\n\n\
         | code | HTTP | name | message |\n|---|---|---|---|\n",
    );
    for code in Code::ALL {
        let i = code.info();
        out.push_str(&format!("| {} | {} | {} | {} |\n", i.code, i.http, i.name, i.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_doc_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md");
        let expected = errors_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "docs/errors.md is stale: run UPDATE_DOCS=1 cargo test errors_doc"
        );
    }

    #[test]
    fn codes_are_unique() {
        // Capillary gives 660 and 661 one meaning in the transaction APIs and another in the
        // coupon APIs; every other number means one thing.
        const SHARED: [u32; 2] = [660, 661];
        let mut seen: Vec<u32> = Code::ALL
            .iter()
            .filter(|c| !matches!(c, Code::CouponRevoked | Code::NoRedemptionId))
            .map(|c| c.info().code)
            .collect();
        assert!(SHARED.iter().all(|n| seen.contains(n)));
        let distinct = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), distinct);
    }
}
