package helpdesk

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/agentauthz/agentauthz/internal/demo"
)

// ResetPasswordMethod is the gRPC method's full name, which is also its HTTP/2 path.
const ResetPasswordMethod = "/acme.helpdesk.v1.Helpdesk/ResetPassword"

// RegisterGRPC serves the Helpdesk gRPC service of the demo policy's helpdesk.proto on s:
// ResetPassword resets a password as the REST route does, behind the same token (metadata
// authorization: Bearer <token>). Its messages are dynamic, compiled from the proto file the
// policy checks them with (demo.HelpdeskProto), so there is no generated code to drift.
func (a *API) RegisterGRPC(s grpc.ServiceRegistrar) error {
	fd, err := demo.HelpdeskProto()
	if err != nil {
		return err
	}
	svc := fd.Services().ByName("Helpdesk")
	if svc == nil || svc.Methods().ByName("ResetPassword") == nil {
		return errors.New("helpdesk: helpdesk.proto has no Helpdesk.ResetPassword")
	}
	m := svc.Methods().ByName("ResetPassword")
	in, out := m.Input(), m.Output()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: string(svc.FullName()),
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: string(m.Name()),
			Handler: func(_ any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
				req := dynamicpb.NewMessage(in)
				if err := dec(req); err != nil {
					return nil, err
				}
				handle := func(ctx context.Context, _ any) (any, error) { return a.resetGRPC(ctx, req, out) }
				if intercept == nil {
					return handle(ctx, req)
				}
				return intercept(ctx, req, &grpc.UnaryServerInfo{Server: a, FullMethod: ResetPasswordMethod}, handle)
			},
		}},
		Metadata: fd.Path(),
	}, a)
	return nil
}

func (a *API) resetGRPC(ctx context.Context, req *dynamicpb.Message, out protoreflect.MessageDescriptor) (*dynamicpb.Message, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	cred := a.checkCredential(md.Get("authorization"))
	field := func(m protoreflect.Message, name string) protoreflect.Value {
		return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
	}
	user := field(req, "username").String()
	a.log.Info("grpc", "method", ResetPasswordMethod, "credential", cred)
	if cred != "injected" {
		return nil, status.Error(codes.Unauthenticated, "call this API through agentauthz, which holds its credential")
	}
	reset := field(req, "reset").Message()
	reason := field(reset, "reason").String()
	if reason == "" {
		return nil, status.Error(codes.InvalidArgument, "send a reset with a reason")
	}
	pr, ok := a.ResetPassword(user, reason, field(reset, "notify_user").Bool())
	if !ok {
		return nil, status.Error(codes.NotFound, "no such user")
	}
	resp := dynamicpb.NewMessage(out)
	for name, v := range map[string]protoreflect.Value{
		"username":         protoreflect.ValueOfString(pr.Username),
		"sessions_revoked": protoreflect.ValueOfBool(true),
		"notified":         protoreflect.ValueOfBool(pr.NotifyUser),
	} {
		resp.Set(out.Fields().ByName(protoreflect.Name(name)), v)
	}
	return resp, nil
}
